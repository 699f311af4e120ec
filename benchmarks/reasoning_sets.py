"""Labelled reasoning / chain-of-thought evaluation sets, read from ../shared/data at run time.

Shared by `eval_cot.py` (the `cot_tag` stage) and the `reasoning_depth` evaluation. Nothing here is
shipped with the package; the data stays in ../shared (several sources are CC BY-NC or unlicensed).

`load_labelled(shared, per_source=None, seed=0, hard_negatives=True)` returns one row per answer:

| column | meaning |
|---|---|
| `source` | see the table below |
| `prompt` | the instruction (plus its input), or the question |
| `answer` | the text a model would be trained to produce |
| `label` | 1 = reasoning / CoT, 0 = not |
| `slice` | positives: `short_worked`, `worked`; negatives: `structure_list`, `long_plain`, `code`, `plain`, |
| | `answer_only`, `bare_equation` |
| `gsm8k_steps` | GSM8K rows: number of non-empty solution lines before `####`; null elsewhere |
| `split` | `dev` or `test`: a stable hash of (source, prompt, answer), half each; tune on dev, report test |

Positives (label 1):
- `gsm8k`: GSM8K train answers as shipped (`<<48/2=24>>` annotations, `#### 72`).
- `flan_cot`: FLAN cot_data rationales in FLAN's CoT target format `"{rationale} So the answer is {answer}."`
  (aqua, creak, ecqa, gsm8k, qasc, sensemaking, strategyqa).
- `zero_shot_cot`: the GPT-3 generations of the `*_zero_shot_cot.log` files. The trigger
  "Let's think step by step." is part of the prompt in Kojima et al., so it goes to `prompt`, not to
  `answer`; the answer is the generation plus the answer-extraction line ("Therefore, the answer ... is X.").

Negatives (label 0): answers to *non-reasoning* instructions from
- `alpaca` (alpaca_52k), `code_alpaca` (code_alpaca_2k + new_codealpaca), `llamafactory` (alpaca_en_demo).

Non-reasoning rule, on the prompt only (instruction + input), never on the answer: the prompt is kept as
a negative only if it matches none of
  - a digit next to an arithmetic operator or `=` (`3 + 4`, `x=2`, `12/5`, `2^3`), or a `%`;
  - maths / logic words: calculate, compute, solve, equation, math(s), arithmetic, sum, product, average,
    mean, median, percent(age), probability, ratio, fraction, how many, how much, how long, how far, total,
    reason(ing), logic(al), puzzle, riddle, prove, proof, derive, deduce, infer, evaluate, estimate,
    convert, algorithm, complexity, factorial, prime, divisible, multiply, divide, subtract, add up,
    number of, greater than, less than, next number, sequence, series, area of, perimeter, volume of, radius,
    formula, geometry (the last line was added after reading the false positives of the dev half: number
    sequences and geometry are maths prompts the first list missed);
  - "explain why / how", "why", "step", "justify", "what would happen", "if ... then".
So the negatives are answers nobody asked to reason about; whatever reasoning they still carry is noise
in the labels, reported as such in EVAL_COT.md (false positives are listed there for review).

Hard negatives, added when `hard_negatives` is true (their sources are not in the issue's list;
`ISSUE_SOURCES` names those that are, for evaluations that must stick to it):
- `flan_answer_only`: the same FLAN questions answered without the rationale: `"The answer is {answer}."`
  (an answer marker alone is not reasoning).
- `svamp_equation`: SVAMP's single equation with its result, `"( 76.0 - 25.0 ) = 51.0"` (one calculation
  is not a chain).

Slices (answer only, first match wins): positives are `short_worked` when the answer has at most 200
characters, else `worked`. Negatives: `code` (a code fence, or lines that look like code), `structure_list`
(3+ numbered/bulleted lines, or 3+ of First/Second/Third/Next/Then/Finally/Lastly starting a sentence),
`long_plain` (600+ characters: essays, stories, descriptions), else `plain`; the hard negatives have
their own slices (`answer_only`, `bare_equation`).

`load_chinese(shared, per_source=None, seed=0)` returns the same columns (without `gsm8k_steps`) for
alpaca_zh_hikariming (`alpaca_zh`), belle_zh (`belle_zh`, eval set) and the LLaMA-Factory zh demo
(`llamafactory_zh`). Labels there: 0 for prompts that pass the non-reasoning rule (with Chinese maths
words added: 计算/求/多少/几/为什么/推理/证明/数学/方程/解释/逻辑/概率/平均/百分), 0 for the
"整数加减法" supplement (slice `bare_equation`: "91-33=58"), and null (unlabelled, observed only) for
the rest, including BELLE's `math` class.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import polars as pl

ISSUE_SOURCES = ("gsm8k", "flan_cot", "zero_shot_cot", "alpaca", "code_alpaca", "llamafactory")
HARD_NEGATIVE_SOURCES = ("flan_answer_only", "svamp_equation")
POSITIVE_SOURCES = ("gsm8k", "flan_cot", "zero_shot_cot")

_SCHEMA = {
    "source": pl.String,
    "prompt": pl.String,
    "answer": pl.String,
    "label": pl.Int8,
    "slice": pl.String,
    "gsm8k_steps": pl.Int32,
    "split": pl.String,
}

_REASONING_PROMPT = re.compile(
    r"\d\s*[-+*/×÷^=<>]\s*\d|\d\s*%|[a-z]\s*=\s*\d"
    r"|\b(?:calculat|comput|solv|equation|maths?\b|arithmetic|sum\b|sums\b|product of|average|mean\b|median"
    r"|percent|probabilit|ratio\b|fraction|how many|how much|how long|how far|total|reason|logic|puzzle|riddle"
    r"|prove|proof|deriv|deduc|infer|evaluat|estimat|convert|algorithm|complexity|factorial|prime\b"
    r"|divisib|multipl|divide|subtract|add up|number of|greater than|less than|explain why|explain how|why\b"
    r"|step|justify|what would happen|if\b.*\bthen\b|next number|sequence|series\b|area of|perimeter|volume of|radius"
    r"|formula|geometry)",
    re.IGNORECASE | re.DOTALL,
)
_REASONING_PROMPT_ZH = re.compile(
    r"计算|求|多少|几|为什么|推理|证明|数学|方程|解释|逻辑|概率|平均|百分|\d\s*[-+*/×÷=]\s*\d"
)

_CODE = re.compile(
    r"```|^\s*(?:def |class |import |from \S+ import|#include|public |function |return\b|for\s*\(|while\s*\(|"
    r"SELECT |CREATE |<\w+[^>]*>|[}{]\s*$)|;\s*$",
    re.MULTILINE,
)
_LIST_LINE = re.compile(r"^\s*(?:\d{1,2}[.)、]|[-*•])\s*\S", re.MULTILINE)
_ORDINAL = re.compile(r"(?:^|[.!?:]\s+|\n)\s*(?:First|Second|Third|Fourth|Next|Then|Finally|Lastly)\b")


def is_reasoning_prompt(prompt: str) -> bool:
    """The prompt asks for maths, logic or an explanation (see the module docstring): not a negative."""
    return bool(_REASONING_PROMPT.search(prompt) or _REASONING_PROMPT_ZH.search(prompt))


def negative_slice(answer: str) -> str:
    """`code`, `structure_list`, `long_plain` or `plain` (first match wins)."""
    if _CODE.search(answer):
        return "code"
    if len(_LIST_LINE.findall(answer)) >= 3 or len(_ORDINAL.findall(answer)) >= 3:
        return "structure_list"
    return "long_plain" if len(answer) >= 600 else "plain"


def positive_slice(answer: str) -> str:
    """`short_worked` (at most 200 characters) or `worked`."""
    return "short_worked" if len(answer) <= 200 else "worked"


def _split(source: str, prompt: str, answer: str) -> str:
    digest = hashlib.blake2b(f"{source}\x00{prompt}\x00{answer}".encode(), digest_size=8).digest()
    return "dev" if digest[0] % 2 == 0 else "test"


def _row(source: str, prompt: str, answer: str, label: int | None, slice_: str, steps: int | None = None) -> dict:
    return {
        "source": source,
        "prompt": prompt,
        "answer": answer,
        "label": label,
        "slice": slice_,
        "gsm8k_steps": steps,
        "split": _split(source, prompt, answer),
    }


def _gsm8k(shared: Path) -> list[dict]:
    rows = []
    with open(shared / "gsm8k" / "train.jsonl", encoding="utf-8") as f:
        for line in f:
            item = json.loads(line)
            answer = item["answer"]
            steps = sum(1 for s in answer.split("####")[0].split("\n") if s.strip())
            rows.append(_row("gsm8k", item["question"], answer, 1, positive_slice(answer), steps))
    return rows


def _flan(shared: Path, hard_negatives: bool) -> list[dict]:
    rows = []
    for path in sorted((shared / "flan_cot" / "cot_data").glob("*_train.tsv")):
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) != 3:
                    continue  # a handful of malformed lines: not evaluable, counted nowhere
                question, answer, rationale = (p.replace("\\n", "\n").strip() for p in parts)
                if not rationale or not answer:
                    continue
                text = f"{rationale} So the answer is {answer}."
                rows.append(_row("flan_cot", question, text, 1, positive_slice(text)))
                if hard_negatives:
                    rows.append(_row("flan_answer_only", question, f"The answer is {answer}.", 0, "answer_only"))
    return rows


_ZS_BLOCK = re.compile(r"\nQ: (.*?)\nA: Let's think step by step\.(.*?)\npred_before", re.DOTALL)


def _zero_shot_cot(shared: Path) -> list[dict]:
    rows = []
    for path in sorted((shared / "zero_shot_cot" / "log").glob("*_zero_shot_cot.log")):
        text = path.read_text(encoding="utf-8")
        for question, generation in _ZS_BLOCK.findall(text):
            answer = generation.strip()
            if answer:
                prompt = f"{question.strip()}\nLet's think step by step."
                rows.append(_row("zero_shot_cot", prompt, answer, 1, positive_slice(answer)))
    return rows


def _instructions(path: Path, source: str, output_key: str = "output") -> list[dict]:
    rows = []
    for item in json.loads(path.read_text(encoding="utf-8")):
        prompt = "\n".join(x for x in (item["instruction"], item.get("input", "")) if x)
        answer = item[output_key]
        if answer.strip() and not is_reasoning_prompt(prompt):
            rows.append(_row(source, prompt, answer, 0, negative_slice(answer)))
    return rows


def _svamp(shared: Path) -> list[dict]:
    rows = []
    for item in json.loads((shared / "svamp" / "SVAMP.json").read_text(encoding="utf-8")):
        answer = f"{item['Equation'].strip()} = {item['Answer']}"
        rows.append(_row("svamp_equation", f"{item['Body']} {item['Question']}", answer, 0, "bare_equation"))
    return rows


def _sample(df: pl.DataFrame, per_source: int | None, seed: int) -> pl.DataFrame:
    if per_source is None:
        return df
    parts = []
    for source in df["source"].unique(maintain_order=True):
        part = df.filter(pl.col("source") == source)
        parts.append(part.sample(n=min(per_source, part.height), seed=seed) if part.height > per_source else part)
    return pl.concat(parts)


def load_labelled(
    shared: Path, per_source: int | None = None, seed: int = 0, hard_negatives: bool = True
) -> pl.DataFrame:
    """The labelled English set (columns in the module docstring); `per_source` samples that many rows per source."""
    shared = Path(shared)
    rows = _gsm8k(shared) + _flan(shared, hard_negatives) + _zero_shot_cot(shared)
    rows += _instructions(shared / "alpaca_52k" / "alpaca_data.json", "alpaca")
    rows += _instructions(shared / "code_alpaca" / "code_alpaca_2k.json", "code_alpaca")
    rows += _instructions(shared / "code_alpaca" / "new_codealpaca.json", "code_alpaca")
    rows += _instructions(shared / "llamafactory_demo" / "alpaca_en_demo.json", "llamafactory")
    if hard_negatives:
        rows += _svamp(shared)
    return _sample(pl.DataFrame(rows, schema=_SCHEMA), per_source, seed)


def _zh_rows(items: list[tuple[str, str]], source: str) -> list[dict]:
    rows = []
    for prompt, answer in items:
        if not answer.strip():
            continue
        label = None if is_reasoning_prompt(prompt) else 0
        slice_ = "observed" if label is None else negative_slice(answer)
        rows.append(_row(source, prompt, answer, label, slice_))
    return rows


def load_chinese(shared: Path, per_source: int | None = None, seed: int = 0) -> pl.DataFrame:
    """The Chinese sets (same columns; `gsm8k_steps` is null); labels as in the module docstring."""
    shared = Path(shared)
    zh = shared / "alpaca_zh_hikariming"
    items: list[tuple[str, str]] = []
    bare: list[tuple[str, str]] = []
    for path in sorted((zh / "translated_zh").glob("*.json")) + sorted((zh / "other_zh_supplement").glob("*.json")):
        text = path.read_text(encoding="utf-8")
        # One file ships with a trailing comma before the closing bracket (invalid JSON as shipped).
        data = json.loads(re.sub(r",\s*\]\s*$", "]", text))
        pairs = [
            ("\n".join(x for x in (d.get("instruction", ""), d.get("input", "")) if x), d.get("output", ""))
            for d in data
        ]
        (bare if path.name == "整数加减法.json" else items).extend(pairs)
    rows = _zh_rows(items, "alpaca_zh")
    rows += [_row("alpaca_zh", p, a, 0, "bare_equation") for p, a in bare if a.strip()]
    belle = []
    with open(shared / "belle_zh" / "eval_set.json", encoding="utf-8") as f:
        for line in f:
            item = json.loads(line)
            belle.append((item["question"], item["std_answer"], item["class"]))
    for prompt, answer, cls in belle:
        if not answer.strip():
            continue
        if cls == "math" or is_reasoning_prompt(prompt):
            rows.append(_row("belle_zh", prompt, answer, None, "observed"))
        else:
            rows.append(_row("belle_zh", prompt, answer, 0, negative_slice(answer)))
    demo = json.loads((shared / "llamafactory_demo" / "alpaca_zh_demo.json").read_text(encoding="utf-8"))
    rows += _zh_rows(
        [("\n".join(x for x in (d["instruction"], d["input"]) if x), d["output"]) for d in demo], "llamafactory_zh"
    )
    return _sample(pl.DataFrame(rows, schema=_SCHEMA), per_source, seed)
