"""Training and evaluation of the demo model: not part of the library.

`lpd_core` is inference only and never imports this package; this package imports `lpd_core`
(the model, the tokenizer and the decode loop it trains and evaluates). Run it from the checkout
root (`python -m training --help`); `pip install .` installs `lpd_core` only.

    shapes.py   the procedural data set of coloured shapes (the demo's ten classes)
    vq.py       training the VQ tokenizer
    lpd.py      the LPD objective and training the LPD model; the demo file's metadata
    judge.py    the shape classifier that judges samples, and the Fréchet distance
    common.py   seeding, learning-rate schedule, image conversion, progress lines
    __main__.py the command line: `vq`, `lpd`, `judge`
"""
