"""``python -m xaijax.protopnet``: train and explain a ProtoPNet (see ``train.main``)."""

from xaijax.protopnet.train import main

if __name__ == "__main__":
    main()
