"""ProtoPNet: prototypical part networks ("this looks like that"), trained and explained in JAX.

References:
    Chen, Li, Tao, Barnett, Su, Rudin. "This Looks Like That: Deep Learning for Interpretable
    Image Recognition." NeurIPS 2019.
"""
