"""The JAX section of bench_conv.py: ``SphericalStencil.conv`` under ``jax.jit`` against
``jax.lax.conv_general_dilated`` on an image of the same pixel count, in the same run as torch."""


def bench_jax(args, timeit, row, table_header, image_shape, fmt):
    import jax
    import jax.numpy as jnp

    import foscat_core as fc

    nside, b, c, k = args.nside, args.batch, args.channels, args.kernel
    npix = 12 * nside * nside
    h, w_img = image_shape(npix)
    st = fc.SphericalStencil(nside, k, backend="jax", dtype="float32")  # table from the memory cache
    st.operators()

    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    x = jax.random.normal(keys[0], (b, c, npix), jnp.float32)
    w = jax.random.normal(keys[1], (c, c, k * k), jnp.float32) / (c * k * k) ** 0.5
    xi = jax.random.normal(keys[2], (b, h, w_img, c), jnp.float32)  # NHWC: XLA's CPU layout
    wi = jax.random.normal(keys[3], (k, k, c, c), jnp.float32) / (c * k * k) ** 0.5
    dims = ("NHWC", "HWIO", "NHWC")

    def c2d(x, w):
        return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dims)

    def with_grads(f):
        # The output with the gradients of sum(out): otherwise XLA prunes the forward product.
        def fb(x, w):
            out, vjp = jax.vjp(f, x, w)
            return (out, *vjp(jnp.ones_like(out)))

        return fb

    def run(fn, *a):
        return lambda: jax.block_until_ready(fn(*a))

    st_f, st_fb = jax.jit(st.conv), jax.jit(with_grads(st.conv))
    c2d_f, c2d_fb = jax.jit(c2d), jax.jit(with_grads(c2d))
    print(f"jax {jax.__version__} on {jax.devices()[0]}, same sizes; conv2d reference is "
          f"jax.lax.conv_general_dilated NHWC ({b}, {h}, {w_img}, {c}), padding SAME")
    res = {
        "c2d_f": timeit(run(c2d_f, xi, wi), args.reps, args.warmup),
        "c2d_fb": timeit(run(c2d_fb, xi, wi), args.reps, args.warmup),
        "st_f": timeit(run(st_f, x, w), args.reps, args.warmup),
        "st_fb": timeit(run(st_fb, x, w), args.reps, args.warmup),
    }
    table_header()
    row("lax.conv fwd (jit)", res["c2d_f"])
    row("SphericalStencil.conv fwd, jit", res["st_f"], res["c2d_f"])
    row("lax.conv fwd+bwd (jit)", res["c2d_fb"])
    row("SphericalStencil.conv fwd+bwd, jit", res["st_fb"], res["c2d_fb"])
    print()
    return res
