"""MedIQA Edge: scanner-side CT/MRI image-quality agent.

The design card's folders (agent/, engines/, training/, export/, configs/) install as
subpackages of this namespace: ``mediqa.agent``, ``mediqa.engines`` and so on.
"""

__version__ = "0.1.0"
