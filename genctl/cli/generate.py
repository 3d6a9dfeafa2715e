"""genctl generate BUNDLE --cond label=7 -n 16 --seed 0 --backend onnxruntime --out grid.png."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from genctl.cli.common import console, err_console, user_errors
from genctl.cli.options import BackendOption, Eta, GuidanceScale, MaxNewTokens, Precision, PrecisionOption, SamplerChoice, Seed, Steps, Temperature, TopK, TopP


@user_errors
def generate(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder.")],
    cond: Annotated[Optional[list[str]], typer.Option("--cond", help="NAME=VALUE (label=7, label=0,1,2 for rows, locale=de_DE, smile=0.7, tint=0,1,0). "
                                                                     "Default: every class.")] = None,
    prompt: Annotated[Optional[list[str]], typer.Option("--prompt", help="Text prompt of a text-conditioned model ('a bold 7 leaning right'); "
                                                                         "repeat for grid rows; '' = unconditional.")] = None,
    cond_file: Annotated[Optional[list[str]], typer.Option("--cond-file",
                                                           help="Vector condition from a .npy: emb.npy or NAME=emb.npy ((dim,) or (rows, dim)).")] = None,
    n: Annotated[Optional[int], typer.Option("-n", help="Samples per condition row (default 16, or the number of --from images).")] = None,
    seed: Seed = 0,
    backend: BackendOption = "auto",
    precision: PrecisionOption = Precision.fp32,
    out: Annotated[Optional[Path], typer.Option(help="Write .png grid / .npy (images) or .txt / .json (text).")] = None,
    from_image: Annotated[Optional[Path], typer.Option("--from", help="Re-condition a real image (cvae): PNG or .npy.")] = None,
    from_label: Annotated[Optional[str], typer.Option(help="The --from image's own label (needed to encode it).")] = None,
    temperature: Temperature = None,
    steps: Steps = None,
    guidance_scale: GuidanceScale = None,
    eta: Eta = None,
    sampler: SamplerChoice = None,
    top_k: TopK = None,
    top_p: TopP = None,
    max_new_tokens: MaxNewTokens = None,
    prefix: Annotated[Optional[str], typer.Option(help="Text: prompt prefix, e.g. 'Ma'.")] = None,
) -> None:
    """Generate samples for the given conditions and print a summary (or write them with --out)."""
    from genctl.bundle import Bundle
    from genctl.conditions import parse_cond_args, read_cond_files
    from genctl.errors import GenctlError
    from genctl.render.samples import check_out
    from genctl.runtime.generator import Generator, check_request

    conditions = parse_cond_args(cond or [])
    controls = dict(temperature=temperature, steps=steps, guidance_scale=guidance_scale, eta=eta, sampler=sampler,
                    top_k=top_k, top_p=top_p, max_new_tokens=max_new_tokens)
    inputs = {"prefix": prefix} if prefix is not None else {}
    if from_label is not None and from_image is None:
        raise GenctlError("--from-label", got=repr(from_label), expected="--from IMAGE with it (the label of that image)")
    b = Bundle.load(bundle)
    conditions.update(read_cond_files(cond_file or [], b.conditions))
    conditions = b.conditions.with_prompts(conditions, prompt)
    if out is not None:  # everything checkable is checked before sessions open and samples are made
        check_out(out, b.output_kind)
    check_request(b, conditions, 16 if n is None else n, seed, **({"images": from_image} if from_image else {}), **inputs, **controls)
    with Generator.load(b, backend=backend, precision=precision.value) as gen:
        if from_image is not None:
            inputs.update(_from_inputs(gen, from_image, from_label))
            n = n or len(inputs["images"])
        samples = gen.generate(conditions, n=16 if n is None else n, seed=seed, **inputs, **controls)
        _report(gen, samples, out)


def _from_inputs(gen, path: Path, label: str | None) -> dict:
    import numpy as np

    from genctl.errors import GenctlError
    from genctl.render.samples import read_images

    if label is None:
        raise GenctlError("--from-label", got="nothing", expected="the --from image's own label, e.g. --from-label 7")
    images = read_images(path, gen.bundle.info["output"]["shape"],
                         note=lambda line: err_console.print(f"note: {escape(line)}", highlight=False, soft_wrap=True))
    cond = gen.bundle.conditions.conditions[0]
    return {"images": images, "image_labels": np.full(len(images), cond.parse(label), dtype=np.int64)}


def _report(gen, samples, out: Path | None) -> None:
    from genctl.render.samples import write_samples

    if samples.kind == "text" and gen.bundle.info.get("bits"):  # ntm: "input | output" and the bits as a picture
        from genctl.render.heads import bits_picture

        for i, text in enumerate(samples.texts):
            console.print(f"{samples.rows[i // samples.n]}  {text}", highlight=False)
            for line in bits_picture(text):
                console.print(f"    {line}", highlight=False)
    elif samples.kind == "text":
        for i, text in enumerate(samples.texts):
            console.print(f"{samples.rows[i // samples.n]:>20}  {text}", highlight=False)
    else:
        d = samples.data
        console.print(f"generated {len(d)} samples {tuple(d.shape[1:])} with {gen.backend.describe()}: "
                      f"rows {', '.join(samples.rows)}; pixel mean {d.mean():.3f} std {d.std():.3f}", highlight=False)
    if out is not None:
        write_samples(samples, out)
        console.print(f"wrote {out}")
