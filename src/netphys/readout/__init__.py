"""Read-outs fitted on a network's features: linear models of recorded neurons (C4).

* :class:`PLSNeuronModels` -- one-component PLS regression per neuron, 80/20 split, held-out r^2;
* :class:`LassoNeuronModels` -- per-neuron LassoCV with or without a positivity constraint;
* :func:`sign_consistency` -- features whose weight sign agrees across > 90% of the neuron models
  (binomial test, Bonferroni);
* :func:`weight_balance` -- total positive / total |negative| weight per model (Table 2, Fig. 16).

Encoding models (D3):

* :class:`EncodingModel` -- per-neuron ridge (or lasso) from a layer's features, penalty by K-fold CV,
  held-out and noise-corrected Pearson r, weight map and filter importance;
* :func:`layer_features`, :func:`fit_encoding_models`, :func:`encoding_table` -- features of a network
  layer for a session's images, the fit in one call, the models x layers table;
* :class:`GaborBank` -- the V1-like Gabor-wavelet baseline features.

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
from .encoding import EncodingModel, encoding_table, fit_encoding_models, layer_features
from .gabor import GaborBank

__all__ += ["EncodingModel", "GaborBank", "encoding_table", "fit_encoding_models", "layer_features"]
