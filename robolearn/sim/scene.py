"""Procedural scenes: robot, table, objects, obstacles, markers, assembled with ``mujoco.MjSpec``.

A task describes what it needs in a :class:`SceneConfig`; :func:`build_model` compiles it. The
robot comes from ``sim/robots/panda.xml``; everything else is generated here so that a task can
change a table's size or add a cube without writing MJCF.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mujoco
import numpy as np

from robolearn.assets import sim_asset

#: Panda joint configuration with the gripper pointing down above the table, fingers open.
HOME_QPOS = (0.0, 0.10, 0.0, -2.20, 0.0, 2.30, 0.7854, 0.04, 0.04)
HOME_TIME = 1.0  # s; see build_model
ARM_JOINTS = tuple(f"joint{i}" for i in range(1, 8))
FINGER_JOINTS = ("finger_left", "finger_right")
WORLD_CONTYPE = 1  # table, floor and objects; the robot (contype 2) touches these but not itself


@dataclass(frozen=True)
class ObjectSpec:
    """A free-floating box-shaped object."""

    name: str
    half_size: tuple[float, float, float] = (0.025, 0.025, 0.025)
    mass: float = 0.1
    friction: float = 1.0
    rgba: tuple[float, float, float, float] = (0.85, 0.2, 0.2, 1.0)
    default_pos: tuple[float, float, float] = (0.5, 0.0, 0.025)


@dataclass(frozen=True)
class MarkerSpec:
    """A visual-only mocap sphere, e.g. a goal position; never collides."""

    name: str
    radius: float = 0.02
    rgba: tuple[float, float, float, float] = (0.2, 0.85, 0.2, 0.5)


@dataclass(frozen=True)
class ObstacleSpec:
    """A fixed box that collides with the robot and objects but never moves under contact.

    It is a mocap body, so a task can place it per world at reset (``sim.mocap_pos``, row
    ``model.body(name).mocapid``) and the ``states`` of a demo file record where it stood.
    """

    name: str
    half_size: tuple[float, float, float] = (0.015, 0.015, 0.15)
    default_pos: tuple[float, float, float] = (0.6, 0.0, 0.15)
    friction: float = 1.0
    rgba: tuple[float, float, float, float] = (0.35, 0.35, 0.4, 1.0)


@dataclass(frozen=True)
class SceneConfig:
    objects: tuple[ObjectSpec, ...] = ()
    markers: tuple[MarkerSpec, ...] = ()
    obstacles: tuple[ObstacleSpec, ...] = ()
    #: Table top is at z = 0; the box spans ``center_xy ± half_extent_xy`` and ``height`` below.
    table_center_xy: tuple[float, float] = (0.45, 0.0)
    table_half_extent_xy: tuple[float, float] = (0.35, 0.4)
    table_height: float = 0.75
    table_friction: float = 1.0
    timestep: float = 0.005
    robot_base_pos: tuple[float, float, float] = (0.0, 0.0, 0.0)
    extra_cameras: tuple[str, ...] = field(default=())


def build_spec(cfg: SceneConfig) -> mujoco.MjSpec:
    # The robot file is the root of the scene; table, objects and markers are added around it.
    spec = mujoco.MjSpec.from_file(str(sim_asset("robots/panda.xml")))
    spec.modelname = "robolearn_scene"
    spec.body("link0").pos = list(cfg.robot_base_pos)
    spec.option.timestep = cfg.timestep
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.impratio = 10.0
    spec.visual.global_.offwidth = 640
    spec.visual.global_.offheight = 480

    world = spec.worldbody
    world.add_light(
        pos=[0.4, 0.0, 1.5], dir=[0, 0, -1], type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL
    )
    world.add_geom(
        name="floor",
        type=mujoco.mjtGeom.mjGEOM_PLANE,
        size=[3, 3, 0.1],
        pos=[0, 0, -cfg.table_height],
        rgba=[0.6, 0.6, 0.6, 1],
        contype=WORLD_CONTYPE,
        conaffinity=WORLD_CONTYPE,
    )
    half_h = cfg.table_height / 2
    world.add_geom(
        name="table",
        type=mujoco.mjtGeom.mjGEOM_BOX,
        size=[*cfg.table_half_extent_xy, half_h],
        pos=[*cfg.table_center_xy, -half_h],
        rgba=[0.75, 0.6, 0.45, 1],
        friction=[cfg.table_friction, 0.005, 0.0001],
        contype=WORLD_CONTYPE,
        conaffinity=WORLD_CONTYPE,
    )
    world.add_camera(name="agentview", pos=[1.35, 0.0, 0.55], xyaxes=[0, 1, 0, -0.4, 0, 0.92])
    world.add_camera(name="sideview", pos=[0.5, -1.1, 0.45], xyaxes=[1, 0, 0, 0, 0.4, 0.92])

    for obj in cfg.objects:
        body = world.add_body(name=obj.name, pos=list(obj.default_pos))
        body.add_freejoint(name=f"{obj.name}_joint")
        body.add_geom(
            name=obj.name,
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=list(obj.half_size),
            mass=obj.mass,
            friction=[obj.friction, 0.005, 0.0001],
            rgba=list(obj.rgba),
            contype=WORLD_CONTYPE,
            conaffinity=WORLD_CONTYPE,
            condim=4,
            # Priority makes the object's friction govern all its contacts (MuJoCo otherwise takes
            # the max of the pair), so that randomising object friction really changes contacts.
            priority=1,
            # ... and its solver parameters too: stiff, hard contacts (as on the finger pads) so a
            # grasped object does not creep out of the fingers while the arm moves.
            solref=[0.01, 1.0],
            solimp=[0.95, 0.99, 0.001, 0.5, 2.0],
        )
        body.add_site(name=obj.name, size=[0.005, 0.005, 0.005], group=4)

    for obstacle in cfg.obstacles:
        body = world.add_body(name=obstacle.name, mocap=True, pos=list(obstacle.default_pos))
        body.add_geom(
            name=obstacle.name,
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=list(obstacle.half_size),
            friction=[obstacle.friction, 0.005, 0.0001],
            rgba=list(obstacle.rgba),
            contype=WORLD_CONTYPE,
            conaffinity=WORLD_CONTYPE,
        )

    for marker in cfg.markers:
        body = world.add_body(name=marker.name, mocap=True, pos=[0.5, 0.0, 0.1])
        body.add_geom(
            type=mujoco.mjtGeom.mjGEOM_SPHERE,
            size=[marker.radius, 0, 0],
            rgba=list(marker.rgba),
            contype=0,
            conaffinity=0,
            group=2,
        )
    return spec


def build_model(cfg: SceneConfig) -> mujoco.MjModel:
    """Compile the scene with a ``home`` keyframe: arm at :data:`HOME_QPOS`, objects at rest."""
    spec = build_spec(cfg)
    model = spec.compile()
    qpos = model.qpos0.copy()
    qpos[joint_qpos_indices(model, ARM_JOINTS + FINGER_JOINTS)] = HOME_QPOS
    # Worlds start their clock at HOME_TIME: MuJoCo's automatic reset of a diverged world sets
    # the clock to 0, so a divergence is visible even on an episode's first step.
    spec.add_key(name="home", time=HOME_TIME, qpos=qpos.tolist(), ctrl=list(HOME_QPOS))
    return spec.compile()


def joint_qpos_indices(model: mujoco.MjModel, names: tuple[str, ...]) -> np.ndarray:
    return np.array([model.joint(n).qposadr[0] for n in names])


def joint_dof_indices(model: mujoco.MjModel, names: tuple[str, ...]) -> np.ndarray:
    return np.array([model.joint(n).dofadr[0] for n in names])
