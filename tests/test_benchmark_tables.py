"""The MIT-BIH → SVDB benchmark's README tables, from a result shaped like `run_budget`'s."""
from __future__ import annotations

import math

from transfer_mitdb_svdb import markdown_table, stage_seconds_table

METRICS = ("macro_f1", "macro_auroc", "sensitivity_S", "ppv_S", "sensitivity_V", "ppv_V")


def _utility_row(arm: str, value: float) -> dict:
    row = {"arm": arm}
    for metric in METRICS:
        row |= {metric: value, f"{metric}_seed_low": value - 0.1, f"{metric}_seed_high": value + 0.1}
    return row


def _result(budget: int, seconds: dict) -> dict:
    utility = [_utility_row(arm, 0.5) for arm in ("target_real", "source_real+target_real", "source_real")]
    utility.append(_utility_row("target_real+synthetic:tgdp", 0.6) | {"ppv_S": math.nan})
    utility.append(_utility_row("synthetic_only:tgdp", 0.4))  # not a row of the table
    return {
        "budget": budget,
        "utility": utility,
        "fidelity": [{"method": "tgdp", "class": "all", "mmd": 0.04123, "frechet": 21.3},
                     {"method": "tgdp", "class": "N", "mmd": 9.0, "frechet": 9.0}],
        "privacy": [{"method": "tgdp", "memorized_share": 0.0013}],
        "seconds_when_computed": seconds,
    }


def test_one_row_per_generator_then_the_real_arms_with_intervals_and_fidelity():
    lines = markdown_table([_result(50, {})]).splitlines()
    assert len(lines) == 2 + 4
    tgdp = lines[2].split(" | ")
    assert tgdp[:4] == ["| 50", "real + synthetic: tgdp", "0.600 [0.500, 0.700]", "0.600 [0.500, 0.700]"]
    assert tgdp[5] == "–", "an undefined PPV is shown as a dash, not nan"
    assert tgdp[-3:] == ["0.0412", "21.30", "0.001 |"], "fidelity over all classes, not per class"
    assert [line.split(" | ")[1] for line in lines[3:]] == ["target_real", "source_real+target_real", "source_real"]
    assert lines[3].endswith("|  |  |  |"), "real arms have no fidelity or privacy"


def test_stage_seconds_has_a_column_per_budget_and_blanks_for_stages_a_budget_lacks():
    table = stage_seconds_table([_result(50, {"ingest": 4.2, "evaluate": 974.4}), _result(200, {"ingest": 3.0})])
    lines = table.splitlines()
    assert lines[0] == "| stage | budget 50 | budget 200 |"
    assert lines[2:] == ["| ingest | 4 | 3 |", "| evaluate | 974 |  |"]
