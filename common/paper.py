"""The paper's numbers as data, each citing where it comes from; the report prints them beside measured ones.

Sources: Ha & Schmidhuber (2018), "World Models" / "Recurrent World Models Facilitate Policy Evolution"
(../shared/paper/), and the 2018 code where the paper is silent (noted).
"""

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
CARRACING_SOLVED = 900  # average over 100 consecutive trials
CARRACING_TRAINING = {"generations": 1800, "eval_mean_1024": 900.46}  # appendix, "Car Racing" training

DOOM_TEMPERATURE_TABLE = [  # trained in the dream, 100 real rollouts ("Doom" section, temperature table)
    {"temperature": 0.10, "dream_mean": 2086, "dream_std": 140, "real_mean": 193, "real_std": 58},
    {"temperature": 0.50, "dream_mean": 2060, "dream_std": 277, "real_mean": 196, "real_std": 50},
    {"temperature": 1.00, "dream_mean": 1145, "dream_std": 690, "real_mean": 868, "real_std": 511},
    {"temperature": 1.15, "dream_mean": 918, "dream_std": 546, "real_mean": 1092, "real_std": 556},
    {"temperature": 1.30, "dream_mean": 732, "dream_std": 269, "real_mean": 753, "real_std": 139},
]
DOOM_BASELINES = {"random policy": (210, 108), "Gym leaderboard": (820, 58)}
DOOM_SOLVED = 750  # average survival over 100 consecutive rollouts
DOOM_BEST_DREAM_1024 = 959  # best agent over 1,024 dream rollouts (appendix, "DoomRNN")
DOOM_TEMPERATURE = 1.15  # the paper's (the 2018 code used 1.25)
