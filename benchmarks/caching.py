"""Frozen-feature caching: one head-only training epoch of the seed CNN (conv base frozen) with
and without caching the base's features, on the synthetic 28×28 set.

``nptl.fit`` with ``cache_features=True`` runs the frozen base once over the training set
(reported separately as "feature extraction") and then trains the head on the cached features;
with ``cache_features=False`` every step runs the base forward again.  Epoch times are the
``History`` per-epoch seconds (median over the epochs run), so extraction is not in them.
"""
import statistics
import time


def run(ctx):
    if not ctx.has_nptl:
        return {"rows": [], "skipped": f"nptl not importable: {ctx.nptl_error}"}
    from benchmarks.suite import log
    import nptl
    from nptl.data import load_synthetic

    per_class = 30 if ctx.quick else 500
    epochs = 1 if ctx.quick else 3
    data = load_synthetic(per_class, 1, seed=0)
    x, y = data.x_train, data.y_train
    rows = []
    timings = {}
    for cached in (False, True):
        model = nptl.seed_cnn((1, 28, 28), 10, seed=0)
        model.freeze(up_to="flatten")
        opt = nptl.optim.Adam(model, lr=1e-3)
        log(f"  head-only epochs on {len(x)} images, cache_features={cached}")
        nptl.fit(model, x[:64], y[:64], opt, epochs=1, cache_features=cached, progress=False)  # warm-up/JIT
        t0 = time.perf_counter()
        hist = nptl.fit(model, x, y, opt, epochs=epochs, batch_size=64, cache_features=cached, progress=False)
        total = time.perf_counter() - t0
        epoch = statistics.median(hist.history["seconds"])
        timings[cached] = {"epoch_seconds": epoch, "total_seconds": total,
                           "extraction_seconds": total - sum(hist.history["seconds"]) if cached else 0.0}
    speedup = timings[False]["epoch_seconds"] / timings[True]["epoch_seconds"]
    rows.append({"images": int(len(x)), "epochs": epochs, "uncached": timings[False], "cached": timings[True],
                 "epoch_speedup": speedup})
    return {"rows": rows}


def table(rows, render):
    header = ["images", "epochs", "epoch s (no cache)", "epoch s (cached)", "epoch speedup",
              "feature extraction s", "total s (no cache / cached)"]
    body = [[r["images"], r["epochs"], f"{r['uncached']['epoch_seconds']:.3f}", f"{r['cached']['epoch_seconds']:.4f}",
             f"{r['epoch_speedup']:.0f}×", f"{r['cached']['extraction_seconds']:.3f}",
             f"{r['uncached']['total_seconds']:.2f} / {r['cached']['total_seconds']:.2f}"] for r in rows]
    return render(header, body)
