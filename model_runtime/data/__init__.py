"""Labelled utterances for training and evaluating the joint model."""
