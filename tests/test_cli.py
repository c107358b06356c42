"""Layer 6: the ``ipusim`` command line against DESIGN.md § Contracts.

In-process through :func:`simulator.cli.main` (with capsys): ``--help`` of every command,
``topology show`` / ``list``, ``run --json`` printing exactly one JSON document, ``--set``, and
exit 2 with one ``ipusim: error: file:line ...`` line (no traceback) for each kind of bad input
— YAML syntax, duplicate key, unknown key (did you mean), wrong type, negative bandwidth in an
inline topology, a chip that does not exist, a missing file, hostile tags, an alias bomb.
Two real subprocesses check the exit codes as a shell sees them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from simulator import cli

COMM = """\
schema_version: 1
topology: m2000
strategy:
  type: comm
  pattern: all_reduce
  algorithm: ring
  bytes_per_chip: 2000000
"""

INLINE_TOPOLOGY = """\
schema_version: 1
topology:
  schema_version: 1
  kind: system
  name: tiny
  chip: gc200
  pods: 1
  machines_per_pod: 1
  chips_per_machine: 4
  ipu_link_GBps: {bandwidth}
  ipu_link_efficiency: 0.9
  ipu_link_hop_latency_ns: 160
  fabric:
    pattern: ladder
    rung_links: 1
    rail_links: 1
    wrap: false
strategy:
  type: comm
  pattern: all_reduce
  bytes_per_chip: 1000
"""

ALIAS_BOMB = (
    "a: &a [x, x, x, x, x, x, x, x, x]\n"
    + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + "schema_version: 1\n"
)


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def assert_input_error(code: int, out: str, err: str, where: str) -> None:
    """Exit 2, nothing on stdout, one line on stderr starting ``ipusim: error:`` and naming
    ``where`` (file:line), no traceback."""
    assert code == 2, err
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ipusim: error: "), err
    assert where in lines[0], err
    assert "Traceback" not in err


# ---- help and version --------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [[], ["run"], ["topology"], ["topology", "show"], ["topology", "list"]],
    ids=["ipusim", "run", "topology", "topology show", "topology list"],
)
def test_help_of_every_command(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: ipusim {' '.join(argv)}".rstrip())


def test_help_names_the_exit_codes(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "2 invalid input" in out and "3 plan infeasible" in out


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("ipusim ")


def test_unknown_command_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["bogus"])
    assert exc.value.code == 2
    assert "invalid choice: 'bogus'" in capsys.readouterr().err


# ---- topology ----------------------------------------------------------------------------


def test_topology_show_text(capsys) -> None:
    code, out, err = run(["topology", "show", "pod64"], capsys)
    assert code == 0 and err == ""
    assert "pod64" in out and "64" in out and "bisection" in out


def test_topology_show_json_has_the_contract_keys(capsys) -> None:
    code, out, err = run(["topology", "show", "pod64", "--json"], capsys)
    assert code == 0 and err == ""
    doc = json.loads(out)
    contract = {
        "name",
        "num_chips",
        "chips",
        "links",
        "peak_flops",
        "sram_bytes",
        "bisection_GBps",
        "power_W",
    }
    assert contract <= set(doc)
    assert doc["name"] == "pod64" and doc["num_chips"] == 64
    assert len(doc["chips"]) == 64
    assert {"id", "machine"} <= set(doc["chips"][0])
    assert [c["id"] for c in doc["chips"]] == list(range(64))
    assert doc["links"] and {"endpoints", "kind"} <= set(doc["links"][0])
    # by hand from topologies/chips/gc200.yaml: 64 x 1472 tiles x 1.325 GHz x 128 FLOP/cycle
    assert doc["peak_flops"]["fp16"] == pytest.approx(64 * 1472 * 1.325e9 * 128, rel=1e-12)
    assert doc["peak_flops"]["fp32"] == pytest.approx(64 * 1472 * 1.325e9 * 32, rel=1e-12)
    assert doc["sram_bytes"] == 64 * 1472 * 638976
    assert doc["bisection_GBps"] > 0 and doc["power_W"] > 0


def test_topology_list(capsys) -> None:
    code, out, _ = run(["topology", "list"], capsys)
    assert code == 0
    assert "pod64" in out and "mk1-server16" in out and "gc200" in out


def test_topology_show_unknown_name(capsys) -> None:
    code, out, err = run(["topology", "show", "pod65"], capsys)
    assert_input_error(code, out, err, "unknown system or chip 'pod65' (did you mean 'pod64'?)")


# ---- run ---------------------------------------------------------------------------------


def test_run_json_prints_exactly_one_document(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, "ar.yaml", COMM)
    code, out, _ = run(["run", str(path), "--json"], capsys)
    assert code == 0
    doc = json.loads(out)  # fails on anything before or after the one document
    assert out.startswith("{") and out.endswith("}\n")
    assert doc["name"] == "ar" and doc["feasible"] is True and doc["reason"] is None
    assert doc["pattern"] == "all_reduce" and doc["algorithm"] == "ring"
    # ring all-reduce on m2000 by hand: alpha = 377.4 (sync) + 128.62 + 231 + 160 ns,
    # beta = 2 x 27.72 GB/s; each 500 kB fragment is 1,472 messages (one per tile), 24 B of
    # link header each, and the slowest of 1,472 deliveries waits 45.46 cycles x 1471/1473 at
    # 1.325 GHz (gc200.yaml)
    alpha, beta, m = 897.02e-9, 2 * 32e9 * 0.86625, 2e6
    step = alpha + (m / 4 + 1472 * 24) / beta + 45.46 / 1.325e9 * 1471 / 1473
    assert doc["time_s"] == pytest.approx(6 * step, rel=0.01)
    assert doc["algbw_GBps"] == pytest.approx(m / doc["time_s"] / 1e9, rel=1e-9)
    assert doc["bandwidth_GBps"] == pytest.approx(6 * m / doc["time_s"] / 1e9, rel=1e-9)
    assert str(tmp_path) not in out  # no absolute paths in results


def test_run_text(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, "ar.yaml", COMM)
    code, out, _ = run(["run", str(path)], capsys)
    assert code == 0
    assert "all_reduce" in out and "m2000" in out


def test_set_overrides_a_key(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, "ar.yaml", COMM)
    code, out, _ = run(["run", str(path), "--json", "--set", "strategy.bytes_per_chip=1e6"], capsys)
    assert code == 0
    small = json.loads(out)
    assert small["bytes_per_chip"] == 1e6
    _, out, _ = run(["run", str(path), "--json"], capsys)
    assert small["time_s"] < json.loads(out)["time_s"]


def test_set_with_a_bad_key_is_invalid_input(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, "ar.yaml", COMM)
    code, out, err = run(["run", str(path), "--set", "strategy.bytes_per_chp=1e6"], capsys)
    assert_input_error(code, out, err, "bytes_per_chp")
    code, out, err = run(["run", str(path), "--set", "strategy.bytes_per_chip"], capsys)
    assert_input_error(code, out, err, "key.path=value")


def test_per_transfer_gives_the_same_answer(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, "ar.yaml", COMM)
    _, fast, _ = run(["run", str(path), "--json"], capsys)
    _, slow, _ = run(["run", str(path), "--json", "--per-transfer"], capsys)
    fast_doc, slow_doc = json.loads(fast), json.loads(slow)
    assert fast_doc["time_s"] == pytest.approx(slow_doc["time_s"], rel=1e-9)
    assert fast_doc["engine"]["cached_steps"] > 0 == slow_doc["engine"]["cached_steps"]


BAD_INPUTS = {
    "syntax": (COMM.replace("pattern: all_reduce", "pattern: [all_reduce"), ":6:"),
    "duplicate": (COMM.replace("topology: m2000\n", "topology: m2000\ntopology: pod4\n"), ":3:"),
    "unknown_key": (COMM.replace("bytes_per_chip", "bytes_per_chp"), ":7:"),
    "wrong_type": (COMM.replace("2000000", "lots"), ":7:"),
    "negative_bandwidth": (INLINE_TOPOLOGY.format(bandwidth=-32), ":10:"),
    "missing_chip": (COMM.replace("  algorithm: ring\n", "  chips: [0, 7]\n"), ":6:"),
    "alias_bomb": (ALIAS_BOMB, ":1:"),
    "bad_pattern": (COMM.replace("all_reduce", "allreduce"), ":5:"),
}
DETAILS = {
    "syntax": "invalid YAML",
    "duplicate": "duplicate key 'topology'",
    "unknown_key": "did you mean 'bytes_per_chip'",
    "wrong_type": "strategy.bytes_per_chip",
    "negative_bandwidth": "ipu_link_GBps",
    "missing_chip": "chip 7 does not exist",
    "alias_bomb": "alias",
    "bad_pattern": "strategy.pattern",
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_with_file_and_line(case: str, tmp_path: Path, capsys) -> None:
    text, where = BAD_INPUTS[case]
    path = write(tmp_path, f"{case}.yaml", text)
    code, out, err = run(["run", str(path), "--json"], capsys)
    assert_input_error(code, out, err, f"{case}.yaml{where}")
    assert DETAILS.get(case, "") in err


def test_inline_topology_with_positive_bandwidth_runs(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, "tiny.yaml", INLINE_TOPOLOGY.format(bandwidth=32))
    code, out, _ = run(["run", str(path), "--json"], capsys)
    assert code == 0 and json.loads(out)["system"] == "tiny"


def test_hostile_yaml_is_refused_and_not_run(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "pwned"
    text = COMM.replace(
        "topology: m2000", f'topology: !!python/object/apply:os.system ["touch {marker}"]'
    )
    path = write(tmp_path, "hostile.yaml", text)
    code, out, err = run(["run", str(path), "--json"], capsys)
    assert_input_error(code, out, err, "hostile.yaml:2:")
    assert "not allowed" in err
    assert not marker.exists()


def test_missing_file(tmp_path: Path, capsys) -> None:
    code, out, err = run(["run", str(tmp_path / "nowhere.yaml"), "--json"], capsys)
    assert_input_error(code, out, err, "nowhere.yaml")
    assert "not found" in err


def test_internal_error_exits_1_without_traceback(tmp_path: Path, capsys, monkeypatch) -> None:
    import simulator.run

    def boom(*_args, **_kwargs):
        raise RuntimeError("kaput")

    monkeypatch.setattr(simulator.run, "run_scenario", boom)
    monkeypatch.delenv("IPUSIM_DEBUG", raising=False)
    path = write(tmp_path, "ar.yaml", COMM)
    code, out, err = run(["run", str(path), "--json"], capsys)
    assert code == 1 and out == ""
    assert "internal error: RuntimeError: kaput" in err and "Traceback" not in err


# ---- as a shell sees it --------------------------------------------------------------------


def _ipusim() -> list[str]:
    script = Path(sys.executable).parent / "ipusim"
    return [str(script)] if script.exists() else [sys.executable, "-m", "simulator.cli"]


def test_subprocess_exit_codes(tmp_path: Path) -> None:
    good = write(tmp_path, "good.yaml", COMM)
    bad = write(tmp_path, "bad.yaml", COMM.replace("bytes_per_chip", "bytes_per_chp"))
    ok = subprocess.run(
        [*_ipusim(), "run", str(good), "--json"], capture_output=True, text=True, timeout=120
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["name"] == "good"
    fail = subprocess.run(
        [*_ipusim(), "run", str(bad), "--json"], capture_output=True, text=True, timeout=120
    )
    assert fail.returncode == 2
    assert fail.stdout == ""
    assert fail.stderr.startswith("ipusim: error: ") and "bad.yaml:7:" in fail.stderr
    assert len(fail.stderr.strip().splitlines()) == 1 and "Traceback" not in fail.stderr


def test_module_entry_point(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "simulator.cli", "topology", "show", "m2000", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["num_chips"] == 4
