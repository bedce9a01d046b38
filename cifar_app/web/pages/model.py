"""Model: the architecture per normalization, its parameter budget, and how the norms differ."""

import streamlit as st

from cifar_app.core.model import (
    ARCHITECTURES,
    DEFAULT_ARCH,
    NORMS,
    PARAM_BUDGET,
    build_model,
    count_parameters,
    norm_budget_rows,
    summarize,
)
from cifar_app.core.norms import REGISTRY
from cifar_app.core.settings import TrainSettings
from cifar_app.web import ui
from cifar_app.web.charts import NORM_LABELS, norm_axes_figure

ui.page_setup()
st.title("The model")
st.markdown("`C1 C2 c3 P1 C3 C4 C5 c6 P2 C7 C8 C9 GAP c10` — **C** = 3×3 convolution block "
            "(conv, ReLU, normalization), **c** = 1×1 transition, **P** = 2×2 max-pool, **GAP** = "
            "global average pool, **c10** = 1×1 convolution to the 10 class scores.")
c1, c2 = st.columns([1, 3])
norm = c1.radio("Normalization", NORMS, format_func=NORM_LABELS.get, key="model_norm")
groups = c1.select_slider("Groups", TrainSettings.spec("groups").suggested,
                          value=TrainSettings.default("groups"), key="model_groups",
                          disabled=not REGISTRY[norm].uses_groups)
arch = c1.radio("Architecture", list(ARCHITECTURES), key="model_arch",
                index=list(ARCHITECTURES).index(DEFAULT_ARCH),
                help="the setting `arch`: how the C blocks spend the parameters (default "
                     f"{DEFAULT_ARCH}; the seed-plain recipe's is plain)")
c1.caption(ARCHITECTURES[arch].about)
model = build_model(norm, groups, arch=arch)
total = count_parameters(model)
under = PARAM_BUDGET - total
c1.metric("Parameters", f"{total:,}", f"{under:,} under the {PARAM_BUDGET:,} budget" if under >= 0
          else f"{-under:,} over the {PARAM_BUDGET:,} budget", delta_color="off")
c1.progress(min(1.0, total / PARAM_BUDGET), text=f"{100 * total / PARAM_BUDGET:.1f}% of the budget")
c2.dataframe([{"layer": r.name, "kind": r.kind, "output (C×H×W)": "×".join(map(str, r.output_shape)),
               "parameters": r.params, "receptive field (px)": r.receptive_field}
              for r in summarize(model)], hide_index=True, width="stretch", key="model_table")
c2.caption("Receptive field: the side of the input square one output pixel depends on; after GAP "
           "every output sees the whole 32×32 image.")

st.subheader("Every normalization against the budget")
st.dataframe(norm_budget_rows(groups, arch), hide_index=True, width="stretch", key="model_norms_table")
st.caption("The seed's own LayerNorm, `nn.LayerNorm([C, H, W])`, has a scale and shift per element: "
           f"2·C·H·W parameters a layer, {2 * ARCHITECTURES[arch].widths['C1'] * 32 * 32:,} for C1 alone "
           f"({arch}), so with its affine the network is far "
           "over the budget (the seed turned it off); without it, it has none. The lab's LayerNorm is "
           "`GroupNorm(1, C)`: the same statistics, 2·C parameters.")

st.subheader("How the normalizations differ")
st.plotly_chart(norm_axes_figure(), key="model_norm_axes", width="stretch")
st.markdown("""
- **BatchNorm** normalizes each channel with the mean and variance over the batch and all pixels
  (N, H, W). At test time it uses running averages, so results depend on the batch statistics seen
  in training; it is the fastest to train and tolerates high learning rates.
- **GroupNorm** splits the channels of each image into groups and normalizes each group over its
  channels and pixels (C/G, H, W): no dependence on the batch, so it works with any batch size.
- **LayerNorm** here is GroupNorm with one group: each image is normalized over all its channels
  and pixels (C, H, W), with a per-channel scale and shift (2·C parameters per layer, rather than
  the 2·C·H·W of `nn.LayerNorm([C, H, W])`).
- **None** is the baseline: plain conv + ReLU, with biases.
- **InstanceNorm** is GroupNorm with one channel per group: each image's channel over its pixels
  (H, W).
- **WS + GroupNorm** standardizes each conv's weights (zero mean, unit variance per output channel)
  before GroupNorm (Qiao et al. 2019).
- **Batch Renorm** is BatchNorm whose batch statistics are corrected towards the running ones
  (Ioffe 2017): plain BatchNorm for 500 steps, then r_max rises to 3 and d_max to 5 over 2,500 steps.
- **LayerNorm [C,H,W] (seed)** is the seed's `nn.LayerNorm([C, H, W])`: the lab's LayerNorm's
  statistics, with an affine per element (over the budget) or none.

All variants have the same convolutions; the norms add 2 parameters per channel (BN, GN, LN, IN,
WS+GN, BRN), none (no norm, the seed's LN without affine) or 2·C·H·W (the seed's LN with affine).
""")
