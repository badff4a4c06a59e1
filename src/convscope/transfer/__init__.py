"""Transfer learning: pretrained bases; `convscope.transfer.transfer(...)`, or `convscope transfer` in a shell."""


def __getattr__(name: str):
    # Lazily, so that `transfer.catalog` (used by the torch-free shape arithmetic) does not import torch.
    if name in ("transfer", "transfer_spec"):
        from convscope.transfer import finetune

        return getattr(finetune, name)
    raise AttributeError(f"module 'convscope.transfer' has no attribute {name!r}")
