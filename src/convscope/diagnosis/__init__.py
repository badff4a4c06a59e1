"""The dataset doctor (`convscope doctor`, `convscope.doctor`): what is wrong with a data set, before training."""
