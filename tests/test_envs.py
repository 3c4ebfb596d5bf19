"""Domain-shift environments: Gymnasium API, determinism, domains that change only appearance, factors, data."""
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.collect import collect_frames
from envs.shifts import BackgroundRecolour, ChannelPermutation, HueShift, PaletteSwap, hue_rotate
from vision.data.ground_truth import GroundTruthData, sample_observations

FACTOR_ENVS = ["darla/Sprites-v0", "darla/Pickup-v0", "darla/Reach-v0", "darla/ReachDiscrete-v0"]
ENV_DOMAINS = [(env_id, d) for env_id in FACTOR_ENVS for d in [*envs.domains(env_id), "all"]]


def rollout(env_id, domain, seed=0, steps=40, actions=None, **kwargs):
    """Frames, rewards and factor vectors of ``steps`` steps; actions seeded by ``seed`` unless given."""
    env = gym.make(env_id, domain=domain, **kwargs)
    env.action_space.seed(seed)
    obs, info = env.reset(seed=seed)
    frames, rewards, factors = [obs], [], [envs.factor_vector(env, info)]
    actions = actions if actions is not None else [env.action_space.sample() for _ in range(steps)]
    for a in actions:
        obs, r, terminated, truncated, info = env.step(a)
        frames.append(obs)
        rewards.append(r)
        factors.append(envs.factor_vector(env, info))
        if terminated or truncated:
            obs, info = env.reset()
    return np.array(frames), np.array(rewards), np.array(factors), actions, env.unwrapped


@pytest.mark.parametrize("env_id,domain", ENV_DOMAINS)
def test_check_env(env_id, domain):
    env = gym.make(env_id, domain=domain, render_mode="rgb_array")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the checker reports problems as warnings: make them fail the test
        check_env(env.unwrapped)
    assert env.observation_space == gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    obs, info = env.reset(seed=0)
    assert (env.render() == obs).all() and set(info["factors"]) == set(env.unwrapped.factor_space.names)


@pytest.mark.parametrize("env_id", FACTOR_ENVS)
def test_same_seed_same_trajectory(env_id):
    a, b = rollout(env_id, "source", seed=3), rollout(env_id, "source", seed=3)
    for x, y in zip(a[:3], b[:3]):
        np.testing.assert_array_equal(x, y)
    c = rollout(env_id, "source", seed=4)
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("env_id", FACTOR_ENVS)
def test_domains_differ_only_visually(env_id):
    frames, rewards, factors, actions, env = rollout(env_id, "source", seed=5, steps=60)
    visual = list(env.factor_space.visual)
    state = [k for k in range(len(env.factor_space)) if k not in visual]
    for target in envs.domains(env_id)[1:]:
        t_frames, t_rewards, t_factors, _, t_env = rollout(env_id, target, seed=5, actions=actions)
        np.testing.assert_array_equal(rewards, t_rewards)
        np.testing.assert_array_equal(factors[:, state], t_factors[:, state])
        assert not np.array_equal(frames, t_frames)
        # Visual factors stay inside each domain's allowed values, and the source and target sets are disjoint.
        for k in visual:
            src, tgt = env.domain.allowed[k], t_env.domain.allowed[k]
            assert np.isin(factors[:, k], src).all() and np.isin(t_factors[:, k], tgt).all()
        assert any(not np.intersect1d(env.domain.allowed[k], t_env.domain.allowed[k]).size for k in visual)


@pytest.mark.parametrize("env_id", FACTOR_ENVS)
def test_render_from_factors_reproduces_observations(env_id):
    frames, _, factors, _, env = rollout(env_id, "all", seed=7, steps=30)
    for frame, f in zip(frames, factors):
        np.testing.assert_array_equal(env.render_from_factors(f), frame)
        np.testing.assert_array_equal(env.render_from_factors(env.factor_space.as_dict(f)), frame)


@pytest.mark.parametrize("env_id", FACTOR_ENVS)
def test_scene_data_is_ground_truth_data(env_id):
    data = envs.scene_data(env_id, domain="source")
    assert isinstance(data, GroundTruthData)
    images, f = sample_observations(data, 16, np.random.default_rng(0))
    assert images.shape == (16, 64, 64, 3) and images.dtype == np.uint8 and f.dtype == np.int64
    assert data.domain.contains(f).all()
    np.testing.assert_array_equal(data.render(f[:4]), images[:4])
    # Changing one visual factor changes the image.
    k = data.env.factor_space.visual[0]
    g = f[:1].copy()
    g[0, k] = (g[0, k] + 1) % data.factor_sizes[k]
    assert not np.array_equal(data.render(g)[0], images[0])
    with pytest.raises(ValueError, match="outside"):
        data.render(np.full((1, len(data.factor_sizes)), 999))


def test_scene_data_needs_factors():
    with pytest.raises(ValueError, match="no ground-truth factors"):
        envs.scene_data("darla/CarRacing-v0")


def test_bad_domains_are_clear_errors():
    with pytest.raises(ValueError, match="unknown 'tagret'.*source, target"):
        gym.make("darla/Sprites-v0", domain="tagret")
    with pytest.raises(ValueError, match="unknown factor 'wall_color'"):
        gym.make("darla/Pickup-v0", domain={"wall_color": [0]})
    with pytest.raises(ValueError, match="'agent_x' is a state factor"):
        gym.make("darla/Pickup-v0", domain={"agent_x": [0]})
    with pytest.raises(ValueError, match="'wall_colour' index 8 outside"):
        gym.make("darla/Pickup-v0", domain={"wall_colour": [8]})
    with pytest.raises(ValueError, match="no value 'gold'"):
        gym.make("darla/Pickup-v0", domain={"wall_colour": ["gold"]})
    with pytest.raises(ValueError, match="no allowed values"):
        gym.make("darla/Reach-v0", domain={"arm_colour": []})
    with pytest.raises(ValueError, match="not registered"):
        envs.domains("darla/Nope-v0")


def test_custom_domain_mapping_and_union():
    env = gym.make("darla/Pickup-v0", domain={"wall_colour": ["lavender"], "lighting": [3]}).unwrapped
    fs = env.factor_space
    for seed in range(5):
        _, info = env.reset(seed=seed)
        f = info["factors"]
        assert f["wall_colour"] == fs["wall_colour"].labels.index("lavender") and f["lighting"] == 3
        assert f["floor_colour"] in env.DOMAINS["source"]["floor_colour"]  # unnamed factors keep source values
    union = gym.make("darla/Sprites-v0", domain="source+target").unwrapped
    assert all(len(union.domain.allowed[k]) == 8 for k in union.factor_space.visual)


@pytest.mark.parametrize("env_id", FACTOR_ENVS)
def test_scripted_policy_beats_random(env_id):
    scripted = envs.episode_returns(env_id, "scripted", "target", episodes=2, seed=11)
    random = envs.episode_returns(env_id, "random", "target", episodes=2, seed=11)
    assert scripted.min() > 3 and scripted.mean() > random.mean() + 3
    policy = envs.scripted_policy(env_id)  # a callable works too, and gives the same returns
    np.testing.assert_array_equal(envs.episode_returns(env_id, policy, "target", episodes=2, seed=11), scripted)
    with pytest.raises(ValueError, match="policy: expected a callable"):
        envs.episode_returns(env_id, "greedy")


def test_sprites_grid_sets_board_and_sprite_size():
    small, large = gym.make("darla/Sprites-v0", grid=4).unwrapped, gym.make("darla/Sprites-v0", grid=8).unwrapped
    assert len(small.factor_space["agent_x"].values) == 4 and len(large.factor_space["goal_y"].values) == 8
    # Sprites scale with the cell: a 4 x 4 board draws them twice as wide as an 8 x 8 one.
    areas = []
    for env in (small, large):  # pixels off the (uniform) background, over resets (sprites sometimes overlap)
        areas.append(sum(int((o != o[0, 0]).any(-1).sum()) for o in (env.reset(seed=s)[0] for s in range(10))))
    assert 2.6 < areas[0] / areas[1] < 4.2  # 4x the area, less the anti-aliased rims (larger share when small)
    assert envs.episode_returns("darla/Sprites-v0", "scripted", "source", 2, 0, {"grid": 4}).mean() > 15
    with pytest.raises(ValueError, match="grid: must be an integer in \\[2, 16\\], got 1"):
        gym.make("darla/Sprites-v0", grid=1)


def test_pickup_shaping_is_bounded():
    _, shaped, _, actions, _ = rollout("darla/Pickup-v0", "source", seed=2, steps=149)
    _, sparse, *_ = rollout("darla/Pickup-v0", "source", seed=2, actions=actions, shaping=0.0)
    assert set(np.unique(sparse)) <= {-1.0, 0.0, 1.0} and not np.array_equal(shaped, sparse)
    assert abs(shaped.sum() - sparse.sum()) <= 0.1 * np.hypot(6, 6)  # potential-based: telescopes


@pytest.mark.parametrize("coverage", ["source", "source+target-factors", "held-out-combinations", "randomised"])
@pytest.mark.parametrize("policy", ["random", "explore"])
def test_collect_frames_coverage(coverage, policy):
    data = collect_frames("darla/Pickup-v0", 1000, coverage=coverage, policy=policy, seed=1, progress=False)
    assert data.frames.shape == (1000, 64, 64, 3) and data.frames.dtype == np.uint8
    assert data.factors.shape == (1000, len(data.factor_names)) and data.factors.dtype == np.int64
    assert (data.factors < np.array(data.factor_sizes)).all()
    table = envs.env_class("darla/Pickup-v0").DOMAINS
    seen = {name: set(data.factors[:, data.factor_names.index(name)].tolist()) for name in table["source"]}
    source = {name: set(v) for name, v in table["source"].items()}
    target = {name: set(v) for name, v in table["target"].items()}
    if coverage == "source":
        assert all(seen[n] <= source[n] for n in seen)
    elif coverage in ("source+target-factors", "held-out-combinations"):
        assert all(seen[n] <= source[n] | target[n] for n in seen)
        assert any(seen[n] - source[n] for n in seen)  # target values appear (1000 frames: several episodes)
        cols = [data.factor_names.index(n) for n in table["target"]]
        in_target = np.all([np.isin(data.factors[:, c], sorted(target[n])) for c, n in zip(cols, table["target"])], axis=0)
        if coverage == "held-out-combinations":  # ... but never all together: no frame is a target-domain frame
            assert not in_target.any()
    else:
        assert seen["lighting"] - source["lighting"]  # values of other target domains too
    # Frames are the observations of those factors.
    env = envs.make_factor_env("darla/Pickup-v0")
    for i in (0, 500, 999):
        np.testing.assert_array_equal(env.render_from_factors(data.factors[i]), data.frames[i])
    again = collect_frames("darla/Pickup-v0", 1000, coverage=coverage, policy=policy, seed=1, progress=False)
    np.testing.assert_array_equal(data.frames, again.frames)


def test_collect_frames_errors():
    with pytest.raises(ValueError, match="coverage: unknown 'target'"):
        collect_frames("darla/Sprites-v0", 10, coverage="target", progress=False)
    with pytest.raises(ValueError, match="policy: unknown"):
        collect_frames("darla/Sprites-v0", 10, policy="greedy", progress=False)
    with pytest.raises(ValueError, match="'domain' is set by coverage"):
        collect_frames("darla/Sprites-v0", 10, env_kwargs={"domain": "target"}, progress=False)


SHIFTS = [
    lambda env, seed: HueShift(env, seed=seed),
    lambda env, seed: ChannelPermutation(env, seed=seed),
    lambda env, seed: PaletteSwap(env, seed=seed),
    lambda env, seed: BackgroundRecolour(env, seed=seed),
]


@pytest.mark.parametrize("make_shift", SHIFTS)
def test_shift_wrappers_deterministic_and_visual_only(make_shift):
    base = gym.make("darla/Sprites-v0")
    shifted = make_shift(gym.make("darla/Sprites-v0"), 0)
    assert shifted.observation_space == base.observation_space
    obs, _ = base.reset(seed=2)
    s_obs, _ = shifted.reset(seed=2)
    assert s_obs.dtype == np.uint8 and s_obs.shape == obs.shape and not np.array_equal(s_obs, obs)
    np.testing.assert_array_equal(shifted.shift(obs), s_obs)
    np.testing.assert_array_equal(shifted.shift(obs[None])[0], s_obs)  # batches too
    again = make_shift(gym.make("darla/Sprites-v0"), 0)
    np.testing.assert_array_equal(again.reset(seed=2)[0], s_obs)
    for a in [0, 3, 3, 1]:
        o, r, *_ = base.step(a)
        so, sr, *_ = shifted.step(a)
        assert r == sr
        np.testing.assert_array_equal(shifted.shift(o), so)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*different from the unwrapped")  # a wrapper is the point
        check_env(shifted, skip_render_check=True)


def test_shift_details():
    frame = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    assert np.abs(hue_rotate(hue_rotate(frame, 90), 270).astype(int) - frame).max() <= 12
    env = ChannelPermutation(gym.make("darla/Sprites-v0"), permutation=(2, 1, 0))
    np.testing.assert_array_equal(env.shift(frame), frame[..., ::-1])
    swapped = PaletteSwap(gym.make("darla/Sprites-v0"), levels=4, seed=1).shift(frame)
    np.testing.assert_array_equal(swapped % 64, frame % 64)  # the offset inside each colour cell is kept
    recoloured = BackgroundRecolour(gym.make("darla/Sprites-v0"), background=(0, 0, 0), colour=(9, 9, 9),
                                    tolerance=0).shift(np.zeros((2, 2, 3), np.uint8))
    assert (recoloured == 9).all()
    with pytest.raises(ValueError, match="permutation"):
        ChannelPermutation(gym.make("darla/Sprites-v0"), permutation=(0, 0, 1))
    with pytest.raises(ValueError, match="observation_space"):
        HueShift(gym.make("CartPole-v1"))


def test_car_racing_domains_share_the_track():
    pytest.importorskip("Box2D")
    info = {}
    obs = {}
    for domain in ["source", "target", "target_hue"]:
        env = gym.make("darla/CarRacing-v0", domain=domain, discrete=True)
        obs[domain], info[domain] = env.reset(seed=3)
        for _ in range(3):
            obs[domain], *_, info[domain] = env.step(3)
        assert obs[domain].shape == (64, 64, 3)
        env.close()
    np.testing.assert_allclose(info["source"]["car"], info["target"]["car"])
    np.testing.assert_allclose(info["source"]["track_ahead"], info["target_hue"]["track_ahead"])
    assert not np.array_equal(obs["source"], obs["target"]) and not np.array_equal(obs["source"], obs["target_hue"])
    assert envs.domains("darla/CarRacing-v0") == ["source", "target", "target_hue"]


def test_car_racing_check_env():
    pytest.importorskip("Box2D")
    check_env(gym.make("darla/CarRacing-v0", domain="target").unwrapped)


def test_preview_cli(tmp_path):
    out = tmp_path / "sheet.png"
    subprocess.run([sys.executable, "-m", "envs.preview", "darla/Sprites-v0", "--domains", "source,target",
                    "--out", str(out), "--cols", "4", "--rows", "2"], check=True)
    import cv2
    sheet = cv2.imread(str(out))
    assert sheet is not None and sheet.shape[0] > 2 * 64 * 2 and sheet.shape[1] >= 4 * 64


def test_held_out_combinations_domain_sees_every_target_value_never_a_target_scene():
    from envs.core import resolve_domain

    env = gym.make("darla/Sprites-v0", domain="source+target~target").unwrapped
    space = env.factor_space
    target = resolve_domain(space, env.DOMAINS, "target")
    rows = np.array([space.vector(env.reset(seed=i)[1]["factors"]) for i in range(300)])
    assert not target.contains(rows).any() and env.domain.contains(rows).all()
    for k in space.visual:  # every target value appears, mixed with source values
        assert set(target.allowed[k].tolist()) <= set(rows[:, k].tolist())
    drawn = env.domain.sample(2000, np.random.default_rng(0))
    assert not target.contains(drawn).any()
    # The state stream is the same as in any other domain: same seed, same positions.
    plain = gym.make("darla/Sprites-v0", domain="source").unwrapped
    state = [k for k in range(len(space)) if k not in space.visual]
    a, b = env.reset(seed=7)[1]["factors"], plain.reset(seed=7)[1]["factors"]
    assert [a[space.names[k]] for k in state] == [b[space.names[k]] for k in state]


@pytest.mark.parametrize("env_id", FACTOR_ENVS)
def test_view_scene_data_appends_view_factors(env_id):
    data = envs.scene_data(env_id, domain="source", view=True)
    env = data.env
    f = data.sample_factors(32, np.random.default_rng(0))
    k = len(env.factor_space)
    assert f.shape == (32, len(data.factor_names)) and data.factor_names[:k] == env.factor_space.names
    np.testing.assert_array_equal(data.render(f[:3]), env.render_factors(f[:3, :k]))
    view = env.view_factors(f[:, :k])
    for name, size in env.view_sizes.items():
        col = f[:, data.factor_names.index(name)]
        np.testing.assert_array_equal(col, view[name])
        assert col.min() >= 0 and col.max() < size
    if env_id != "darla/Pickup-v0":  # views from above: where things are is the state itself, not repeated
        assert len(data.factor_names) == k


def test_pickup_view_factors_follow_the_frame():
    env = envs.make_factor_env("darla/Pickup-v0", "source", n_good=1, n_bad=0)
    space = env.factor_space
    f = np.zeros(len(space), dtype=np.int64)
    f[space.index("agent_x")], f[space.index("agent_y")], f[space.index("heading")] = 11, 11, 0  # (2.875, 2.875), facing +x
    ahead_right, behind = f.copy(), f.copy()
    ahead_right[[space.index("object0_x"), space.index("object0_y")]] = 7, 3  # (4.25, 2.25): 1.4 ahead, 0.6 right
    behind[[space.index("object0_x"), space.index("object0_y")]] = 1, 5
    view = env.view_factors(np.stack([ahead_right, behind]))
    assert view["ball_bearing"][0] in (5, 6, 7)  # right of the view's centre, inside the 70° view
    assert view["ball_bearing"][1] in (0, 8) and view["ball_distance"][1] == 5  # none in view
    assert view["ball_distance"][0] == 1  # 1.5 units away
    assert (view["wall_distance"] == 3).all()  # 3.1 units to the wall ahead
    # the ball's pixels are where its bearing says: right of the centre column
    cols = np.flatnonzero((env.render_factors(ahead_right[None]) != env.render_factors(behind[None]))[0].any((0, 2)))
    assert len(cols) and cols.min() >= 32


def test_same_scenes_keep_the_state_and_change_only_the_domain():
    env = envs.make_factor_env("darla/Sprites-v0", "source")
    pairs = envs.same_scenes(env, 20, np.random.default_rng(0))
    assert set(pairs.frames) == set(env.DOMAINS) and pairs.factors.shape[0] == 20
    space = env.factor_space
    state = [i for i in range(len(space)) if i not in space.visual]
    # re-rendering the source scenes from their factors gives the source frames exactly
    assert np.array_equal(env.render_factors(pairs.factors[:, :len(space)]), pairs.frames["source"])
    # every target frame differs from its source frame: the target redraws every colour
    assert all(not np.array_equal(s, t) for s, t in zip(pairs.frames["source"], pairs.frames["target"]))
    assert state and pairs.factor_names[:len(space)] == space.names
    with pytest.raises(ValueError, match="num_scenes: must be >= 2"):
        envs.same_scenes(env, 1, np.random.default_rng(0))
