"""Graph neural network recommenders, losses, data loaders and the offline evaluation harness.

``models`` never imports Kafka: the workers feed it tensors and take tensors back.
"""
