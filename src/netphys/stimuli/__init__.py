"""Stimuli: image sets with coordinates and the preprocessing the model expects."""
from .coerce import TensorStimulusSet, as_stimulus_set
from .demo import demo_stimuli, folder_or_demo
from .preprocess import CAFFE_BGR_MEAN, IMAGENET_MEAN, IMAGENET_STD, Preprocess
from .selection import coverage, diverse_subset
from .stimulus_set import StimulusSet

__all__ = ["StimulusSet", "as_stimulus_set", "diverse_subset", "coverage", "TensorStimulusSet", "Preprocess", "demo_stimuli", "folder_or_demo", "IMAGENET_MEAN", "IMAGENET_STD", "CAFFE_BGR_MEAN"]
