"""Each ask's sampler seed: mixed from (seed, ask number), not seed + number (issue 20, item 4).

Under ``seed + number`` the search of seed s + 1 proposed the candidates of seed s shifted
by one, so "independent" seeds shared most of their candidates. Folders started that way
(no ``seed_scheme`` in ``inputs.json``) must still resume as they began.
"""

import json

import optuna
import pandas as pd
import pytest
from conftest import tiny_search_config

from growsearch.models.mlp import MLPConfig
from growsearch.search import inputs, load_config, load_space, run_search
from growsearch.search.engine import Progress, ask_seed, make_sampler
from growsearch.search.inputs import LEGACY_SEED_SCHEME, SEED_SCHEME

optuna.logging.set_verbosity(optuna.logging.WARNING)


def proposals(seed: int, n: int, sampler_for=None) -> list[tuple[str, str]]:
    """The first ``n`` asks of the random sampler on the bundled MLP space, re-seeded per ask
    as a search does (``sampler_for(k)``: ask k's sampler; default: make_sampler's)."""
    cfg = load_config(tiny_search_config(sampler={"name": "random", "seed": seed}))
    space = load_space("mlp.yaml")
    base = MLPConfig(in_dim=40, out_dim=10, hidden=[64, 64])
    study = optuna.create_study()
    out = []
    for k in range(n):
        study.sampler = sampler_for(k) if sampler_for else make_sampler(cfg, k)
        plan, init = space.suggest(study.ask(), base)
        out.append((plan.describe(), init))
    return out


def test_ask_seed_mixes_seed_and_number():
    seeds = {ask_seed(s, k) for s in range(10) for k in range(100)}
    assert len(seeds) == 1000  # no two (seed, number) pairs share a sampler seed
    assert all(0 <= x < 2 ** 32 for x in seeds)
    assert ask_seed(1, 0) != ask_seed(0, 1)  # seed s + 1 does not replay seed s one ask later
    assert ask_seed(7, 3) == ask_seed(7, 3)
    assert ask_seed(7, 3, LEGACY_SEED_SCHEME) == 10  # older folders: seed + number


def test_seeds_propose_unrelated_candidate_sequences():
    runs = {s: proposals(s, 12) for s in (0, 1, 2)}
    assert proposals(1, 12) == runs[1]  # the same seed proposes the same sequence
    for a, b in ((0, 1), (0, 2), (1, 2)):
        for shift in range(1, 4):  # not a shifted copy of another seed's sequence
            assert runs[b][: 12 - shift] != runs[a][shift:], (a, b, shift)
        shared = set(runs[a]) & set(runs[b])
        assert len(shared) <= 5, (a, b, shared)  # seed + number shared 9-10 of 12 here


def test_the_old_scheme_was_shifted_copies():
    """What the legacy scheme (kept for older folders) does: seed 1 is seed 0 one ask later."""
    old = {s: proposals(s, 12, lambda k, s=s: optuna.samplers.RandomSampler(seed=s + k)) for s in (0, 1)}
    assert old[1][:11] == old[0][1:]
    legacy = proposals(0, 12, lambda k: optuna.samplers.RandomSampler(seed=ask_seed(0, k, LEGACY_SEED_SCHEME)))
    assert legacy == old[0]


class _InterruptedError(Exception):
    pass


class _StopAfter(Progress):
    """Stops the search once ``n`` candidates are screened (records and trials written)."""

    def __init__(self, n: int) -> None:
        self.n, self.name = n, ""

    def stage(self, name: str, total: int) -> None:
        self.name = name

    def advance(self, done: int, text: str = "") -> None:
        if self.name == "screening" and done >= self.n:
            raise _InterruptedError


def _plans(out) -> list[tuple[str, str]]:
    board = pd.read_csv(out / "leaderboard.csv").sort_values("candidate")
    board = board[board["candidate"] != "base"]
    return list(zip(board["plan"], board["init"], strict=True))


def _replay(seed: int, n: int, seed_of) -> list[tuple[str, str]]:
    """The distinct proposals a search makes: ask k seeded by ``seed_of(seed, k)``, repeats skipped."""
    out: list[tuple[str, str]] = []
    for plan in proposals(seed, 60, lambda k: optuna.samplers.RandomSampler(seed=seed_of(seed, k))):
        if plan not in out:
            out.append(plan)
    return out[:n]


def _drop_scheme(out) -> None:
    path = out / "inputs.json"
    record = json.loads(path.read_text())
    record.pop("seed_scheme", None)
    path.write_text(json.dumps(record))


def test_new_folders_record_the_scheme_and_old_ones_resume_with_theirs(tmp_path, monkeypatch):
    cfg = tiny_search_config(candidates=4, reference=False, promotion={"policy": "top_k", "k": 1},
                             sampler={"name": "random", "seed": 3})
    key = ["candidate", "plan", "init", "stage"]

    # a new search records the mixed scheme and proposes by it
    run_search(load_config(cfg), tmp_path / "new")
    assert json.loads((tmp_path / "new" / "inputs.json").read_text())["seed_scheme"] == SEED_SCHEME
    assert _plans(tmp_path / "new") == _replay(3, 4, ask_seed)

    # folders as an older version wrote them: proposals by seed + number, no seed_scheme
    monkeypatch.setattr(inputs, "SEED_SCHEME", LEGACY_SEED_SCHEME)
    run_search(load_config(cfg), tmp_path / "old")
    with pytest.raises(_InterruptedError):
        run_search(load_config(cfg), tmp_path / "cut", progress=_StopAfter(2))
    monkeypatch.undo()
    for name in ("old", "cut"):
        _drop_scheme(tmp_path / name)
    assert len(list((tmp_path / "cut" / "candidates").glob("c*.json"))) == 2
    old = pd.read_csv(tmp_path / "old" / "leaderboard.csv")
    assert _plans(tmp_path / "old") == _replay(3, 4, lambda s, k: s + k)
    assert _plans(tmp_path / "old") != _plans(tmp_path / "new")

    # this version resumes the interrupted old folder with the old scheme: the same leaderboard
    run_search(load_config(cfg), tmp_path / "cut", resume=True)
    cut = pd.read_csv(tmp_path / "cut" / "leaderboard.csv")
    assert cut.sort_values("candidate")[key].values.tolist() == old.sort_values("candidate")[key].values.tolist()
    assert "seed_scheme" not in json.loads((tmp_path / "cut" / "inputs.json").read_text())  # still an old folder
    # and a finished old folder resumes to itself
    run_search(load_config(cfg), tmp_path / "old", resume=True)
    assert pd.read_csv(tmp_path / "old" / "leaderboard.csv")[key].equals(old[key])


def test_a_start_that_failed_before_config_yaml_gets_the_new_scheme(tmp_path):
    """inputs.json alone (a start that failed before config.yaml, nothing proposed): a new search."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "inputs.json").write_text(json.dumps({"study": "run-12345678"}))
    record = inputs.check_inputs(out, {"space_sha256": "x"}, "run")
    assert record["seed_scheme"] == SEED_SCHEME and record["study"] == "run-12345678"
    inputs.save_inputs(out, record)
    assert json.loads((out / "inputs.json").read_text())["seed_scheme"] == SEED_SCHEME
    (out / "config.yaml").write_text("name: run\n")
    inputs.save_inputs(out, {**record, "seed_scheme": "changed"})  # never rewritten once started
    assert json.loads((out / "inputs.json").read_text())["seed_scheme"] == SEED_SCHEME


def test_an_unknown_scheme_is_refused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("name: run\n")
    (out / "inputs.json").write_text(json.dumps({"study": "s", "seed_scheme": "quantum"}))
    with pytest.raises(inputs.ConfigError, match="seed_scheme: got 'quantum'; allowed: seed_sequence"):
        inputs.check_inputs(out, {"space_sha256": "x"}, "run")
