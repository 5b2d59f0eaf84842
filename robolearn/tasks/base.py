"""``Task``: reward, success, reset distribution, observations and action mapping, in batched torch.

A task is written once over ``(num_worlds, ...)`` tensors read from a :class:`BatchedSim`; it runs
unchanged on every backend. A new task is one module (a ``Task`` subclass with its ``Config``) and
one ``conf/task/<name>.yaml``; register it in ``robolearn.tasks.TASKS``.

Observation groups: ``policy`` = proprioception + task state (what a real robot can estimate);
``critic`` = ``policy`` + privileged state (velocities, finger contacts, domain parameters).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from robolearn.sim.batched import BatchedSim
from robolearn.sim.scene import SceneConfig
from robolearn.spec import ActionSpec, ObsSpec, TermSpec
from robolearn.tasks.control import ArmController, ControlConfig, action_dim
from robolearn.tasks.domain import DomainConfig, DomainParams
from robolearn.utils.rotations import yaw_quat

REWARD_TYPES = ("dense", "sparse")
#: Below this height (m, table top is 0) an object has left the table: the episode terminates.
FALLEN_Z = -0.15
#: Rounds of rejection sampling before a reset gives up: the ranges leave (almost) no room.
MAX_REDRAWS = 1000


@dataclass(frozen=True)
class TaskConfig:
    episode_length: int = 100  # control steps before truncation
    control_freq: float = 20.0  # Hz
    timestep: float = 0.005  # physics step, s
    reward_type: str = "dense"
    arm_init_noise: float = 0.02  # rad, uniform per joint around the home posture
    terminate_on_success: bool = False  # end episodes at success (demo collection, evaluation)
    #: End episodes when an object falls off the table. Off for rewards that are never positive
    #: (ADS's optimal transport): there any early end pays, and PPO learns to drop the cube.
    terminate_on_fall: bool = True
    control: ControlConfig = field(default_factory=ControlConfig)
    domain: DomainConfig = field(default_factory=DomainConfig)

    @property
    def substeps(self) -> int:
        return max(1, round(1.0 / (self.control_freq * self.timestep)))

    def validate(self) -> None:
        if self.reward_type not in REWARD_TYPES:
            raise ValueError(f"reward_type {self.reward_type!r}: choose from {REWARD_TYPES}")
        if self.episode_length <= 0:
            raise ValueError(f"episode_length must be positive, got {self.episode_length}")
        if self.control_freq <= 0 or self.timestep <= 0:
            raise ValueError(
                f"control_freq and timestep must be positive, got {self.control_freq}, {self.timestep}"
            )
        # The spec promises control_freq: a rounded number of physics steps would break it.
        steps = 1.0 / (self.control_freq * self.timestep)
        if steps < 1 - 1e-6 or abs(steps - round(steps)) > 1e-6:
            raise ValueError(
                f"a control period of 1/control_freq = {1 / self.control_freq:.6g} s must be a whole "
                f"number of physics steps of {self.timestep} s (it is {steps:.4g})"
            )
        action_dim(self.control.action_mode)


def closeness(distance: torch.Tensor, scale: float = 10.0) -> torch.Tensor:
    """Shaping term in (0, 1]: 1 at distance 0, decaying like ``1 - tanh(scale * d)`` (robosuite)."""
    return 1.0 - torch.tanh(scale * distance)


class Task(ABC):
    name: ClassVar[str]
    Config: ClassVar[type[TaskConfig]] = TaskConfig

    def __init__(self, cfg: TaskConfig | None = None):
        self.cfg = cfg or self.Config()
        self.cfg.validate()
        self.scene = self.scene_config()

    # --- what a task defines ----------------------------------------------------------------
    @abstractmethod
    def scene_config(self) -> SceneConfig:
        """Objects, markers and table of this task's scene."""

    @abstractmethod
    def sample_reset(self, env_ids: torch.Tensor, qpos: torch.Tensor) -> None:
        """Place objects in ``qpos`` rows (len(env_ids), nq) and set task buffers (goals)."""

    @abstractmethod
    def task_terms(self) -> dict[str, torch.Tensor]:
        """Task observation terms of the ``policy`` group, (N, d) float32 each."""

    @abstractmethod
    def dense_reward(self, success: torch.Tensor) -> torch.Tensor:
        """(N,) shaped reward, never negative (``robolearn-rl`` warns when such a reward meets
        episodes that end at success: ending would forfeit it). ``success``: this step's (N,)
        flags, computed once by the env for the reward and the termination alike."""

    @abstractmethod
    def success(self) -> torch.Tensor:
        """(N,) bool."""

    def setup(self) -> None:
        """Allocate task buffers once the sim is bound (override as needed)."""

    def privileged_terms(self) -> dict[str, torch.Tensor]:
        """Extra ``critic`` terms: by default each object's linear and angular velocity."""
        terms = {}
        for obj in self.scene.objects:
            vel = self.sim.qvel[:, self.obj_dof[obj.name] : self.obj_dof[obj.name] + 6].float()
            terms[f"{obj.name}_linvel"] = vel[:, :3]
            terms[f"{obj.name}_angvel"] = vel[:, 3:]
        return terms

    def early_ends(self) -> tuple[str, ...]:
        """The settings that can end this task's episodes before the time limit (those of
        :meth:`terminated`): ``terminate_on_fall`` counts only where an object can fall."""
        ends = ("terminate_on_success",) if self.cfg.terminate_on_success else ()
        if self.cfg.terminate_on_fall and self.scene.objects:
            ends += ("terminate_on_fall",)
        return ends

    def terminated(self, success: torch.Tensor | None = None) -> torch.Tensor:
        """(N,) bool: success, with ``terminate_on_success``; an object fell off the table, with
        ``terminate_on_fall``.

        ``success``: this step's :meth:`success`, when the caller has it already.
        """
        out = (
            (self.success() if success is None else success)
            if self.cfg.terminate_on_success
            else torch.zeros(self.num_worlds, dtype=torch.bool, device=self.device)
        )
        if self.cfg.terminate_on_fall:
            for obj in self.scene.objects:
                out |= self.object_pos(obj.name)[:, 2] < FALLEN_Z
        return out

    # --- shared machinery -------------------------------------------------------------------
    def bind(self, sim: BatchedSim, generator: torch.Generator) -> None:
        self.sim, self.generator = sim, generator
        self.num_worlds, self.device = sim.num_worlds, sim.device
        model = sim.model
        self.controller = ArmController(sim, self.cfg.control)
        self.tcp = model.site("tcp").id
        self.pad_sensors = [model.sensor(n).adr[0] for n in ("left_pad_touch", "right_pad_touch")]
        self.pad_sites = [model.site(n).id for n in ("left_pad", "right_pad")]
        self.home_qpos = torch.as_tensor(
            model.key("home").qpos, device=self.device, dtype=sim.dtype
        )
        self.home_ctrl = torch.as_tensor(
            model.key("home").ctrl, device=self.device, dtype=sim.dtype
        )
        self.obj_body = {o.name: model.body(o.name).id for o in self.scene.objects}
        self.obj_geom = {o.name: model.geom(o.name).id for o in self.scene.objects}
        self.obj_qpos = {
            o.name: int(model.joint(f"{o.name}_joint").qposadr[0]) for o in self.scene.objects
        }
        self.obj_dof = {
            o.name: int(model.joint(f"{o.name}_joint").dofadr[0]) for o in self.scene.objects
        }
        self.marker_mocap = {m.name: int(model.body(m.name).mocapid[0]) for m in self.scene.markers}
        self.domain = DomainParams(self.cfg.domain, self.num_worlds, self.device, generator)
        self._nominal = {
            "mass": torch.as_tensor(model.body_mass, device=self.device),
            "inertia": torch.as_tensor(model.body_inertia, device=self.device),
            "size": torch.as_tensor(model.geom_size, device=self.device),
            "friction": torch.as_tensor(model.geom_friction, device=self.device),
            "damping": torch.as_tensor(model.dof_damping, device=self.device),
        }
        #: Per-world half sizes of each object (they change with ``object_size_scale``).
        self.object_half_size = {
            o.name: torch.tensor(o.half_size, device=self.device).repeat(self.num_worlds, 1)
            for o in self.scene.objects
        }
        self.setup()

    def uniform(self, n: int, low, high) -> torch.Tensor:
        """(n, d) uniform samples in the box [low, high] from the task's generator."""
        low = torch.as_tensor(low, dtype=torch.float32, device=self.device)
        high = torch.as_tensor(high, dtype=torch.float32, device=self.device)
        u = torch.rand((n, *low.shape), generator=self.generator).to(self.device)
        return low + u * (high - low)

    def redraw_where(
        self,
        values: torch.Tensor,
        draw: Callable[[torch.Tensor], torch.Tensor],
        rejected: Callable[[torch.Tensor], torch.Tensor],
        what: str,
    ) -> torch.Tensor:
        """Rejection sampling: replace the rows of ``values`` that ``rejected(values)`` (n,) flags
        by ``draw(mask)`` until none is, or raise naming ``what`` after :data:`MAX_REDRAWS`."""
        for _ in range(MAX_REDRAWS):
            bad = rejected(values)
            if not bad.any():
                return values
            values[bad] = draw(bad)
        raise ValueError(
            f"task {self.name!r}: no {what} in {MAX_REDRAWS} draws for {int(bad.sum())} worlds; "
            "the sampling ranges leave (almost) no room for it: relax the constraint or widen them"
        )

    def reset(self, env_ids: torch.Tensor) -> None:
        if env_ids.numel() == 0:
            return
        self._apply_domain(env_ids)
        n = env_ids.numel()
        qpos = self.home_qpos.repeat(n, 1)
        arm = self.controller.qpos_idx
        noise = self.cfg.arm_init_noise
        qpos[:, arm] += self.uniform(n, [-noise] * 7, [noise] * 7).to(qpos.dtype)
        self.sample_reset(env_ids, qpos)
        ctrl = self.home_ctrl.repeat(n, 1)
        ctrl[:, self.controller.arm_act] = qpos[:, arm]
        self.sim.xfrc_applied[env_ids] = 0
        # sample_reset placed the markers; keep them through the sim's reset to the keyframe.
        mocap_pos = self.sim.mocap_pos[env_ids].clone()
        self.sim.reset(env_ids, qpos=qpos, ctrl=ctrl, mocap_pos=mocap_pos)

    def place_object(
        self, qpos: torch.Tensor, name: str, pos: torch.Tensor, yaw: torch.Tensor | None = None
    ) -> None:
        """Write a free object's pose into ``qpos`` rows: position (n, 3), yaw about z (n,)."""
        adr = self.obj_qpos[name]
        qpos[:, adr : adr + 3] = pos.to(qpos.dtype)
        yaw = yaw if yaw is not None else torch.zeros(len(pos), device=self.device)
        qpos[:, adr + 3 : adr + 7] = yaw_quat(yaw).to(qpos.dtype)

    def place_on_table(
        self,
        qpos: torch.Tensor,
        name: str,
        env_ids: torch.Tensor,
        xy: torch.Tensor,
        max_yaw: float,
    ) -> None:
        """Rest object ``name`` on the table at ``xy`` (n, 2) of worlds ``env_ids``, turned by a
        yaw drawn uniformly in ``[-max_yaw, max_yaw]``."""
        z = self.object_half_size[name][env_ids, 2:3]
        yaw = self.uniform(len(env_ids), [-max_yaw], [max_yaw])[:, 0]
        self.place_object(qpos, name, torch.cat([xy, z], dim=-1), yaw)

    def set_marker(self, name: str, env_ids: torch.Tensor, pos: torch.Tensor) -> None:
        self.sim.mocap_pos[env_ids, self.marker_mocap[name]] = pos.to(self.sim.dtype)

    def apply_action(self, action: torch.Tensor) -> None:
        self.controller.apply(action)

    def reward(self, success: torch.Tensor | None = None) -> torch.Tensor:
        """(N,) reward of the configured type; ``success`` as in :meth:`terminated`."""
        success = self.success() if success is None else success
        if self.cfg.reward_type == "sparse":
            return success.float()
        return self.dense_reward(success)

    # --- state accessors (float32) ------------------------------------------------------------
    def eef_pos(self) -> torch.Tensor:
        return self.sim.site_xpos[:, self.tcp].float()

    def eef_mat(self) -> torch.Tensor:
        return self.sim.site_xmat[:, self.tcp].float()

    def gripper_qpos(self) -> torch.Tensor:
        return self.sim.qpos[:, self.controller.finger_qpos_idx].float()

    def object_pos(self, name: str) -> torch.Tensor:
        return self.sim.xpos[:, self.obj_body[name]].float()

    def object_quat(self, name: str) -> torch.Tensor:
        return self.sim.xquat[:, self.obj_body[name]].float()

    def object_mat(self, name: str) -> torch.Tensor:
        return self.sim.xmat[:, self.obj_body[name]].float()

    def pad_contact(self) -> torch.Tensor:
        """(N, 2) 1.0 where a finger pad touches anything."""
        return (self.sim.sensordata[:, self.pad_sensors] > 0).float()

    def grasped(self, name: str) -> torch.Tensor:
        """Both pads in contact, fingers not fully closed, object between the pads (N,) bool."""
        between = (self.object_pos(name) - self.eef_pos()).norm(
            dim=-1
        ) < 0.02 + self.object_half_size[name].max(-1).values
        closing = self.gripper_qpos().sum(-1) > 0.004
        return (self.pad_contact().sum(-1) == 2) & closing & between

    def in_object_frame(self, name: str, points: torch.Tensor) -> torch.Tensor:
        """World ``points`` (N, 3) in object ``name``'s frame, relative to its centre, (N, 3)."""
        offset = points.float() - self.object_pos(name)
        return (offset.unsqueeze(-2) @ self.object_mat(name).view(-1, 3, 3)).squeeze(-2)

    def pinched(self, name: str) -> torch.Tensor:
        """(N,) bool: both pads touch and the object lies *between* them: the segment from one
        pad's centre to the other crosses the object's box. Stricter than :meth:`grasped`,
        which a box balanced on the outside of the fingers also passes."""
        start, end = (self.in_object_frame(name, self.sim.site_xpos[:, s]) for s in self.pad_sites)
        along = end - start  # then a slab test against the box
        half = self.object_half_size[name]
        safe = torch.where(along.abs() < 1e-9, torch.full_like(along, 1e-9), along)
        t1, t2 = (-half - start) / safe, (half - start) / safe
        enter = torch.minimum(t1, t2).max(dim=-1).values.clamp(min=0.0)
        leave = torch.maximum(t1, t2).min(dim=-1).values.clamp(max=1.0)
        crosses = enter <= leave
        return (self.pad_contact().sum(-1) == 2) & crosses

    # --- observations --------------------------------------------------------------------------
    def observations(self) -> dict[str, torch.Tensor]:
        """All terms of all groups, by name."""
        from robolearn.utils.rotations import mat_to_quat

        terms = {
            "joint_pos": self.controller.arm_qpos().float(),
            "eef_pos": self.eef_pos(),
            "eef_quat": mat_to_quat(self.eef_mat()),
            "gripper_qpos": self.gripper_qpos(),
        }
        terms.update(self.task_terms())
        terms["joint_vel"] = self.sim.qvel[:, self.controller.dof_idx].float()
        terms["pad_contact"] = self.pad_contact()
        terms["domain_params"] = self.domain.normalised().float()
        terms.update(self.privileged_terms())
        if self.sim.dtype == torch.float32:
            # On float32 backends .float() is a view of the sim state; observations handed out
            # (and kept in final_obs) must not change under the caller at the next step.
            terms = {k: v.clone() for k, v in terms.items()}
        return terms

    def obs_spec(self) -> ObsSpec:
        """Derived from one observation, so it can never disagree with what the task emits."""
        terms = self.observations()
        policy = ("joint_pos", "eef_pos", "eef_quat", "gripper_qpos", *self.task_terms().keys())
        return ObsSpec(
            terms={k: TermSpec(tuple(v.shape[1:])) for k, v in terms.items()},
            groups={"policy": policy, "critic": tuple(terms)},
            action=ActionSpec(
                dim=self.controller.dim,
                mode=self.cfg.control.action_mode,
                control_freq=self.cfg.control_freq,
            ),
            task=self.name,
        )

    # --- domain parameters -------------------------------------------------------------------
    def _apply_domain(self, env_ids: torch.Tensor) -> None:
        values = self.domain.resample(env_ids)
        if not self.scene.objects and not self._varies("joint_damping_scale"):
            return
        d = self.domain.index
        if self._varies("joint_damping_scale"):
            damping = self._nominal["damping"].repeat(len(env_ids), 1)
            damping[:, self.controller.dof_idx] *= values[:, d("joint_damping_scale"), None].to(
                damping
            )
            self.sim.set_model_field("dof_damping", env_ids, damping)
        if self._varies("object_friction"):
            friction = self._nominal["friction"].repeat(len(env_ids), 1, 1)
            for geom in self.obj_geom.values():
                friction[:, geom, 0] = values[:, d("object_friction")].to(friction)
            self.sim.set_model_field("geom_friction", env_ids, friction)
        scale_mass = self._varies("object_mass_scale") or self._varies("object_size_scale")
        if self._varies("object_size_scale"):
            size = self._nominal["size"].repeat(len(env_ids), 1, 1)
            for name, geom in self.obj_geom.items():
                size[:, geom] *= values[:, d("object_size_scale"), None].to(size)
                self.object_half_size[name][env_ids] = size[:, geom].float()
            self.sim.set_model_field("geom_size", env_ids, size)
        if scale_mass:
            mass = self._nominal["mass"].repeat(len(env_ids), 1)
            inertia = self._nominal["inertia"].repeat(len(env_ids), 1, 1)
            m_scale = values[:, d("object_mass_scale")].to(mass)
            s_scale = values[:, d("object_size_scale")].to(mass)
            for body in self.obj_body.values():
                mass[:, body] *= m_scale
                inertia[:, body] *= (m_scale * s_scale**2)[:, None]
            self.sim.set_model_field("body_mass", env_ids, mass)
            self.sim.set_model_field("body_inertia", env_ids, inertia)

    def _varies(self, name: str) -> bool:
        """Whether a domain parameter can differ from the model's nominal value."""
        low, high = getattr(self.cfg.domain, name)
        nominal = (
            self.scene.objects[0].friction
            if (name == "object_friction" and self.scene.objects)
            else 1.0
        )
        return not (low == high == nominal)
