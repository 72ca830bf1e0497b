"""Multirun job directory names: the job number and the swept keys, cut with a hash."""

from __future__ import annotations

from omegaconf import OmegaConf

from balanced_align.sweeps import MAX_NAME_BYTES, job_dirname, register_resolvers, swept_keys

FIXED = [f"data.knob_{i}=value_{i}" for i in range(12)]  # a dozen overrides that do not vary


def _multirun_yaml(sweep_dir, task, params=None):
    hydra = {"overrides": {"task": task}, "sweeper": {"params": params or {}}}
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create({"hydra": hydra}), sweep_dir / "multirun.yaml")


def test_swept_keys_are_the_sweeps_of_the_command_line_and_the_sweeper_params(tmp_path):
    _multirun_yaml(
        tmp_path,
        [*FIXED, "loss.lambda=0,-1,3", "align=stn_tps8,stn_proj", "seed=range(3)", "~x.y"],
        {"optim.lr": "interval(0.1,1)", "data.batch_size": "32", "+extra": "a,b"},
    )
    assert swept_keys(tmp_path) == {"loss.lambda", "align", "seed", "optim.lr", "extra"}
    assert swept_keys(tmp_path / "elsewhere") is None


def test_job_name_holds_the_number_and_swept_values_only():
    job = [*FIXED, "loss.lambda=-1", "align=stn_proj", "data.source.root=/data/faces"]
    swept = {"loss.lambda", "align", "data.source.root"}
    name = job_dirname(4, job, swept, exclude_keys=["data.source.root"])
    assert name == "4_align=stn_proj,loss.lambda=-1"  # sorted, paths excluded
    assert job_dirname(0, FIXED, set()) == "0"
    # without a multirun.yaml: every override (Hydra's override_dirname), still short
    assert job_dirname(0, ["b=1", "a=2"], None) == "0_a=2,b=1"


def test_long_names_are_cut_with_a_hash_of_the_whole_name():
    long_a = [f"data.synth_knobs.knob_number_{i}={i}" for i in range(40)]
    long_b = [*long_a[:-1], "data.synth_knobs.knob_number_39=40"]
    a, b = job_dirname(7, long_a, None), job_dirname(7, long_b, None)
    assert len(a.encode()) == len(b.encode()) == MAX_NAME_BYTES
    assert a.startswith("7_data.synth_knobs.knob_number_0=0,")
    assert a != b  # the names differ only past the cut: the hash tells them apart
    assert a == job_dirname(7, list(reversed(long_a)), None)  # order of the overrides: none


def test_values_never_make_nested_or_odd_names():
    name = job_dirname(1, ["loss.template_checkpoint=../../etc/x.ckpt", "tag=a b"], None)
    assert "/" not in name and " " not in name
    assert name.startswith("1_")


def test_resolver_names_a_job_from_the_hydra_nodes(tmp_path):
    register_resolvers()
    register_resolvers()  # idempotent
    _multirun_yaml(tmp_path, [*FIXED, "loss.lambda=0,3"])
    cfg = OmegaConf.create(
        {
            "hydra": {
                "job": {"num": 1, "config": {"override_dirname": {"exclude_keys": ["ckpt_path"]}}},
                "sweep": {"dir": str(tmp_path)},
                "overrides": {"task": [*FIXED, "loss.lambda=3", "ckpt_path=/a/b"]},
            },
            "subdir": "${ba.sweep_subdir:${hydra.job.num},${hydra.sweep.dir},"
            "${hydra.overrides.task},${hydra.job.config.override_dirname.exclude_keys}}",
        }
    )
    assert cfg.subdir == "1_loss.lambda=3"
