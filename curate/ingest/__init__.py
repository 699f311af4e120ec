"""Reading inputs: files, compression, record formats, canonical conversion."""
