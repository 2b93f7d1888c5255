"""Defaults taken from NNI's network-morphism tuner (``utils.Constant``), so a config section that
omits a key behaves like NNI."""

MAX_LAYERS = 100
N_NEIGHBOURS = 8
MAX_MODEL_SIZE = 1 << 24
# NNI has no width cap; Autokeras used 4096 and an unbounded width makes the model-size cap do all the work.
MAX_LAYER_WIDTH = 4096
KERNEL_LAMBDA = 1.0
BETA = 2.576
T_MIN = 0.0001
# NNI hard-codes these two in BayesianOptimizer.generate.
T_INIT = 1.0
COOLING = 0.9
MODEL_LEN = 3
MODEL_WIDTH = 64
MLP_MODEL_LEN = 3
MLP_MODEL_WIDTH = 5
POOLING_KERNEL_SIZE = 2
DENSE_DROPOUT_RATE = 0.5
CONV_DROPOUT_RATE = 0.25
MLP_DROPOUT_RATE = 0.25
# Relative size of the symmetry-breaking noise added to copied/identity weights (NNI's NOISE_RATIO).
NOISE_RATIO = 1e-4
# GP observation noise NNI uses; we grow it on a failed Cholesky factorization.
GP_ALPHA = 1e-10
