"""Before training: which supporting task to use for a target, and MTL or STILTs with it.

``logme`` (You et al., ICML 2021) scores how well features predict labels from forward passes
only; ``features`` embeds a target's training examples with an encoder; ``advice`` ranks the
candidates. Imported by scripts/recommend.py; torch is imported only by ``features``.
"""

from mtlvsift.recommend.logme import logme

__all__ = ["logme"]
