"""BibTeX of papers cited by more than one module (a backend and a training objective)."""

GLICLASS_CITATION = """@article{stepanov2025gliclass,
  title = {{GLiClass}: Generalist Lightweight Model for Sequence Classification Tasks},
  author = {Stepanov, Ihor and Shtopko, Mykhailo and Vodianytskyi, Dmytro and Lukashov, Oleksandr and Yavorskyi, Alexander and Yaroshenko, Mykyta},
  journal = {arXiv preprint arXiv:2508.07662},
  year = {2025},
}"""
