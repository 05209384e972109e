"""The fusions, one module each: its layers, its forward, its RollingQ read-out where it has one,
and the reference it follows.

    attention  Vanilla MT: the published single-head fusion attention with the [cls] query
               RollingQ rotates (``FusionAttention``), the pre-norm blocks above it (MT*)
    mbt        MBT's bottleneck layers (the published ``MBTBackbone``)
    mmml       MMML's cross-modal encoder layers and read-out (the published code's history)
    jmt        JMT's joint representation and cross-attentions (the published code's history)
    mult       MulT's crossmodal and memory transformers (yaohungt/Multimodal-Transformer)

``rollingq.model`` assembles encoders + one fusion + heads.
"""
