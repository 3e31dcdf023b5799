"""mtlvsift: when to use multi-task learning vs intermediate fine-tuning (Weller et al., ACL 2022)."""

__version__ = "0.1.0"
