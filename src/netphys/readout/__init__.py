"""Read-outs fitted on a network's features: linear models of recorded neurons (C4).

* :class:`PLSNeuronModels` -- one-component PLS regression per neuron, 80/20 split, held-out r^2;
* :class:`LassoNeuronModels` -- per-neuron LassoCV with or without a positivity constraint;
* :func:`sign_consistency` -- features whose weight sign agrees across > 90% of the neuron models
  (binomial test, Bonferroni);
* :func:`weight_balance` -- total positive / total |negative| weight per model (Table 2, Fig. 16).

Fitted models become a plain ``torch.nn.Linear`` with ``.as_linear()``, to be sign-ablated like an
output layer or used as the ``predictor`` of :class:`netphys.synthesis.objectives.NeuralModel`.
"""
from .neuron_models import (
    ESTIMATOR_VERSION,
    LassoNeuronModels,
    PLSNeuronModels,
    sign_consistency,
    weight_balance,
)

__all__ = ["ESTIMATOR_VERSION", "LassoNeuronModels", "PLSNeuronModels", "sign_consistency", "weight_balance"]
