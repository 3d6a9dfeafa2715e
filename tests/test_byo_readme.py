"""Bring your own model, the user's side: condition parsing (continuous, vector files) and the README example."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import genctl
from genctl.conditions import ConditionSchema, read_cond_files
from genctl.errors import GenctlError

SHAPES = genctl.Categorical("shape_kind", names=("circle", "square", "star"))
SMILE = genctl.Continuous("smile", 0.0, 1.0)
EMB = genctl.Vector("emb", 4, -1.0, 1.0)

def test_continuous_and_vector_conditions_parse_default_and_read_files(tmp_path):
    schema = ConditionSchema([SHAPES, SMILE, EMB])
    rows = schema.parse({"shape_kind": 2, "smile": "0.1,0.9"})
    assert rows.values["smile"] == [0.1, 0.9] and rows.values["emb"] == [(0.0,) * 4] * 2  # defaults: zeros
    assert ConditionSchema([SMILE]).parse(None).values["smile"] == [0.5]  # the middle of the range
    for bad, message in (("nan", "got nan"), ("-0.1", "got -0.1"), ("x", "got 'x'")):
        with pytest.raises(GenctlError, match=rf"Condition 'smile' \| {message} \| expected a number in \[0.0, 1.0\]"):
            schema.parse({"smile": bad})
    np.save(tmp_path / "emb.npy", np.ones(4))
    assert read_cond_files([str(tmp_path / "emb.npy")], schema)["emb"].shape == (4,)
    np.save(tmp_path / "wide.npy", np.full((2, 4), 3.0))
    with pytest.raises(GenctlError, match=r"Condition 'emb' \| got 3.0 \| expected values in \[-1.0, 1.0\]"):
        schema.parse(read_cond_files([f"emb={tmp_path / 'wide.npy'}"], schema))


@pytest.mark.slow
def test_readme_worked_example_runs_as_written(tmp_path):
    """The README's bring-your-own example, verbatim but for fewer training steps."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("### Your own conditional model", 1)[1]
    script = re.search(r"```bash\n(.*?)```", section, re.S).group(1).replace("model = train()", "model = train(steps=20)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH")])),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    # a checkout on PYTHONPATH with python3 alone (the GPU machines): the same CLI and interpreter
    for command, run in (("genctl", f'"{sys.executable}" -m genctl'), ("python", f'"{sys.executable}"')):
        if shutil.which(command, path=env["PATH"]) is None:
            script = f'{command}() {{ {run} "$@"; }}\n' + script
    done = subprocess.run(["bash", "-e", "-c", script.replace("genctl generate bundles/blobs --cond size=1.5", "! genctl generate bundles/blobs --cond size=1.5")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (tmp_path / "byo-demo" / "blobs.png").is_file() and re.search(r"onnxruntime\[[A-Z,]+\] int8", done.stdout)
    assert "error: Condition 'size' | got 1.5 | expected a number in [0.0, 1.0]" in done.stdout + done.stderr
