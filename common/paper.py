"""The paper's numbers as data, each citing where it comes from: the report prints them beside measured ones, and
the task constants below are every module's defaults (each written once, here).

Sources: Ha & Schmidhuber (2018), "World Models" / "Recurrent World Models Facilitate Policy Evolution"
(../shared/paper/), and the 2018 code where the paper is silent (noted).
"""

# ---- the tasks' settings: the defaults of every stage ----

TASKS = ("doom", "carracing")  # Take Cover (VizDoom) and CarRacing
# Step caps: CarRacing-v3's own 1,000 ("Car Racing Experiment"); Take Cover "for at most 2100 time steps"
# (VizDoom Experiment, Procedure), which the dream DoomRNN keeps too (Appendix, "DoomRNN").
EPISODE_STEPS = {"carracing": 1000, "doom": 2100}
DOOM_TEMPERATURE = 1.15  # the dream's tau: "we increased the temperature slightly and used tau = 1.15" (the 2018
# code used 1.25; Appendix, "DoomRNN")
RANDOM_ROLLOUTS = 10_000  # "collect a dataset of 10,000 random rollouts" (both experiments, Procedure, step 1)
DOOM_RESOLUTION = "640x480"  # the 2018 environment's render size (the paper only says frames become 64x64)
Z_SIZE = {"carracing": 32, "doom": 64}  # V's N_z (Appendix, "Variational Autoencoder")
VAE_EPOCHS = 1  # "We trained the model for 1 epoch" (Appendix, VAE; the 2018 code ran 10)
VAE_BATCH_SIZE = 100  # the 2018 code's (the paper gives none)
VAE_LEARNING_RATE = 1e-4  # Adam (2018 code)
LSTM_UNITS = {"carracing": 256, "doom": 512}  # M's hidden units (Appendix, "MDN-RNN")
NUM_MIXTURES = 5  # Gaussians per latent dimension (Appendix, "MDN-RNN")
# M's training: batches of 100 whole CarRacing episodes (999 steps) for 4,000 steps, Doom's episodes in 100
# streams cut into chunks of 500 for ~24,000 steps: the 2018 code's (the paper says "20 epochs").
RNN_TRAINING = {"carracing": {"steps": 4000, "batch_size": 100, "seq_len": 999},
                "doom": {"steps": 24000, "batch_size": 100, "seq_len": 500}}
# CMA-ES: "a population size of 64, and had each agent perform the task 16 times" (Appendix, "Evolution
# Strategies"); sigma0 0.1 is the 2018 code's; "After 1800 generations" (CarRacing; assumed for Doom); the CMA
# mean evaluated "at the end of every 25 generations ... over 1024 random rollouts" (Appendix).
ES_POPSIZE = 64
ES_ROLLOUTS = 16
ES_SIGMA = 0.1
ES_GENERATIONS = 1800
ES_EVAL_EVERY = 25
ES_EVAL_ROLLOUTS = 1024
EVAL_EPISODES = 100  # the final score: "average score ... over 100 random rollouts" (both experiments)

# ---- the paper's results ----

PARAMETER_COUNTS = {  # exact sizes of the paper's architectures
    "carracing": {"vae": 4_348_547, "rnn": 422_368, "controller": 867},
    "doom": {"vae": 4_446_915, "rnn": 1_678_785, "controller": 1_088},
}
ABLATION_CONTROLLER_COUNTS = {"z": 99, "z_hidden": 1_443}  # CarRacing: z only; z through 40 tanh units

CARRACING_SCORES = [  # 100 random tracks, mean ± std ("Car Racing Experiment", results table)
    {"method": "World Model (V + M), full", "mean": 906, "std": 21},
    {"method": "V model only, z input", "mean": 632, "std": 251},
    {"method": "V model only, z input with a hidden layer", "mean": 788, "std": 141},
    {"method": "DQN", "mean": 343, "std": 18},
    {"method": "A3C (continuous)", "mean": 591, "std": 45},
    {"method": "A3C (discrete)", "mean": 652, "std": 10},
    {"method": "Gym leaderboard", "mean": 838, "std": 11},
]
CARRACING_CONTROLLERS = ("full", "z", "z_hidden")  # the C of CARRACING_SCORES' first three rows, in order
CARRACING_SOLVED = 900  # average over 100 consecutive trials

DOOM_TEMPERATURE_TABLE = [  # trained in the dream, 100 real rollouts ("Doom" section, temperature table)
    {"temperature": 0.10, "dream_mean": 2086, "dream_std": 140, "real_mean": 193, "real_std": 58},
    {"temperature": 0.50, "dream_mean": 2060, "dream_std": 277, "real_mean": 196, "real_std": 50},
    {"temperature": 1.00, "dream_mean": 1145, "dream_std": 690, "real_mean": 868, "real_std": 511},
    {"temperature": 1.15, "dream_mean": 918, "dream_std": 546, "real_mean": 1092, "real_std": 556},
    {"temperature": 1.30, "dream_mean": 732, "dream_std": 269, "real_mean": 753, "real_std": 139},
]
DOOM_BASELINES = {"random policy": (210, 108), "Gym leaderboard": (820, 58)}
DOOM_SOLVED = 750  # average survival over 100 consecutive rollouts
