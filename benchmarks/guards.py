"""Cost of ``fit``'s non-finite guards per training step of the seed CNN (batch 64).

Every step of :func:`nptl.fit` checks the input batch, the loss, each trainable parameter's
gradient and each updated parameter for NaN/±Inf, and copies the trainable parameters before the
update (so that an overflowing update can be undone).  This family times one plain training
step (forward, cross-entropy, backward, SGD update) and, on the same arrays, exactly the guard
work ``fit`` adds to it; the ratio is the guards' share of a step.  Both run in this process,
back to back, so the ratio holds up on a busy machine better than two separate step timings.
"""


def run(ctx):
    if not ctx.has_nptl:
        return {"rows": [], "skipped": f"nptl not importable: {ctx.nptl_error}"}
    import numpy as np

    import nptl
    from benchmarks.suite import log
    from benchmarks.timing import measure
    from nptl import ops
    from nptl._checks import all_finite

    rows = []
    for shape, classes in (((1, 28, 28), 10), ((3, 32, 32), 10)):
        batch = 16 if ctx.quick else 64
        rng = np.random.default_rng(0)
        x = rng.random((batch,) + shape, dtype=np.float32)
        y = rng.integers(0, classes, batch)
        model = nptl.seed_cnn(shape, classes, seed=0)
        opt = nptl.optim.SGD(model, lr=1e-6)
        trainable = model.trainable_parameters()
        before = {p.name: p.value.copy() for p in trainable}

        def step():
            model.zero_grad()
            loss, dlogits = ops.cross_entropy(model.forward(x, training=True), y)
            model.backward(dlogits)
            opt.step()

        def guards():  # what fit adds to a step (the loss check is one float comparison)
            ok = all_finite(x)
            for p in trainable:
                ok &= all_finite(p.grad)
            for p in trainable:
                np.copyto(before[p.name], p.value)
            for p in trainable:
                ok &= all_finite(p.value)
            return ok

        log(f"  seed CNN {shape}, batch {batch}: training step and guards")
        t_step = measure(step, ctx.repeats, 2, ctx.min_time)
        t_guard = measure(guards, ctx.repeats, 1, ctx.min_time)
        n_params = sum(p.value.size for p in trainable)
        rows.append({"model": f"seed CNN {'×'.join(map(str, shape))}", "batch": batch, "parameters": int(n_params),
                     "input_values": int(x.size), "step": t_step, "guards": t_guard,
                     "guard_share": t_guard["seconds"] / t_step["seconds"]})
    return {"rows": rows}


def table(rows, render):
    header = ["model", "batch", "trainable parameters", "training step ms", "guards ms", "guards / step"]
    body = [[r["model"], r["batch"], f"{r['parameters']:,}", f"{1e3 * r['step']['seconds']:.3g}",
             f"{1e3 * r['guards']['seconds']:.3g}", f"{100 * r['guard_share']:.2f}%"] for r in rows]
    return render(header, body)
