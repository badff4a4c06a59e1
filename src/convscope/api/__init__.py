"""The Python API as learners meet it in a notebook or a script: `train` / `transfer` with progress bars, the `Run`
they return (its model loaded once; history, plot, evaluate, predict, feature maps, Grad-CAM, filters, patterns,
explain, report) and the objects that display themselves. Thin: every verb calls the library functions below it.
"""
