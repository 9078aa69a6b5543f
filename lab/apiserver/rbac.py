"""RBAC authorization as kube-apiserver does it, over plain data: who the user is, what the request asks
(`RequestAttributes`, parsed from the method and path like the real RequestInfoFactory) and the stored Roles,
ClusterRoles, RoleBindings and ClusterRoleBindings.

`Policy` indexes the bindings by subject once; `Authorizer` keeps one Policy per RBAC generation (the
caller bumps the generation whenever an RBAC object changes), so a request costs a dict lookup plus the rules
bound to that user. Group system:masters is allowed everything without looking at any rule.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
RBAC_GROUP = "rbac.authorization.k8s.io"
RBAC_PLURALS = ("roles", "clusterroles", "rolebindings", "clusterrolebindings")

# Subresources of a namespace: /api/v1/namespaces/NAME/status is that namespace's status, not a resource.
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
_WATCH_VALUES = frozenset({"true", "1", "True"})
_VERB_BY_METHOD = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete", "GET": "get"}


@dataclass(frozen=True)
class UserInfo:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()

    @property
    def is_master(self) -> bool:
        return MASTERS in self.groups


def authenticated_user(name: str, uid: str = "", groups: Iterable[str] = ()) -> UserInfo:
    """The user as the authenticator hands it on: a service account's groups, then system:authenticated."""
    all_groups = [g for g in groups if g]
    if name.startswith(SERVICE_ACCOUNT_PREFIX):
        namespace = name[len(SERVICE_ACCOUNT_PREFIX) :].split(":", 1)[0]
        all_groups += ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"]
    all_groups.append(AUTHENTICATED)
    return UserInfo(name, uid, tuple(dict.fromkeys(all_groups)))


def parse_token_csv(text: str, source: str = "token file") -> dict[str, UserInfo]:
    """kube-apiserver's static token file: `token,user,uid[,"group1,group2"]` per line."""
    tokens: dict[str, UserInfo] = {}
    for lineno, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) < 3 or not row[1].strip():
            raise ValueError(f"{source} line {lineno}: expected token,user,uid[,\"groups\"]")
        groups = [g.strip() for g in row[3].split(",")] if len(row) > 3 else []
        tokens[row[0].strip()] = authenticated_user(row[1].strip(), row[2].strip(), groups)
    return tokens


def load_token_file(path: Path) -> dict[str, UserInfo]:
    return parse_token_csv(path.read_text(), str(path))


# -- request attributes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestAttributes:
    verb: str
    path: str = ""
    resource_request: bool = True
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    @property
    def combined_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def request_attributes(method: str, path: str, query: Mapping[str, str]) -> RequestAttributes:
    """What a request asks for, derived as the real server's RequestInfoFactory derives it."""
    parts = [p for p in path.split("/") if p]
    method = method.upper()
    if len(parts) >= 2 and parts[0] == "api":
        rest = parts[2:]
        group = ""
    elif len(parts) >= 3 and parts[0] == "apis":
        rest = parts[3:]
        group = parts[1]
    else:
        rest = []
    if not rest:  # discovery, /version, /healthz, /openapi/...: a non-resource request
        return RequestAttributes(verb=method.lower(), path=path, resource_request=False)
    verb = _VERB_BY_METHOD.get(method, method.lower())
    if rest[0] == "watch":
        verb = "watch"
        rest = rest[1:]
    namespace = ""
    if rest and rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0] if rest else ""
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if not name:
        if verb == "get":
            verb = "watch" if query.get("watch") in _WATCH_VALUES else "list"
        elif verb == "delete":
            verb = "deletecollection"
    if verb in ("list", "watch") and not name:
        # A list or watch narrowed to one name (kubectl get svc NAME -w) is authorized against that name.
        for term in query.get("fieldSelector", "").split(","):
            key, sep, value = term.partition("=")
            if sep and key.strip() == "metadata.name":
                name = value.lstrip("=").strip()
    return RequestAttributes(verb, path, True, group, resource, subresource, namespace, name)


def forbidden_message(user: UserInfo, attrs: RequestAttributes) -> str:
    """The real Forbidden Status message, e.g. `services "x" is forbidden: User "u" cannot patch resource
    "services/status" in API group "" in the namespace "default"`."""
    if not attrs.resource_request:
        return f'forbidden: User "{user.name}" cannot {attrs.verb} path "{attrs.path}"'
    reason = (
        f'User "{user.name}" cannot {attrs.verb} resource "{attrs.combined_resource}" '
        f'in API group "{attrs.api_group}"'
    )
    reason += f' in the namespace "{attrs.namespace}"' if attrs.namespace else " at the cluster scope"
    qualified = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
    if attrs.name:
        return f'{qualified} "{attrs.name}" is forbidden: {reason}'
    return f"{qualified} is forbidden: {reason}"


# -- rules and policy -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    verbs: frozenset[str]
    api_groups: frozenset[str] = frozenset()
    resources: frozenset[str] = frozenset()
    resource_names: frozenset[str] = frozenset()
    non_resource_urls: tuple[str, ...] = ()

    @classmethod
    def from_policy_rule(cls, rule: Mapping[str, Any]) -> Rule:
        def strings(key: str) -> list[str]:
            value = rule.get(key) or []
            return [str(v) for v in value] if isinstance(value, list) else []

        return cls(
            frozenset(strings("verbs")),
            frozenset(strings("apiGroups")),
            frozenset(strings("resources")),
            frozenset(strings("resourceNames")),
            tuple(strings("nonResourceURLs")),
        )

    def allows(self, attrs: RequestAttributes) -> bool:
        if attrs.verb not in self.verbs and "*" not in self.verbs:
            return False
        if not attrs.resource_request:
            return any(
                url == "*" or url == attrs.path or (url.endswith("*") and attrs.path.startswith(url[:-1]))
                for url in self.non_resource_urls
            )
        if attrs.api_group not in self.api_groups and "*" not in self.api_groups:
            return False
        if not self._resource_matches(attrs):
            return False
        return not self.resource_names or attrs.name in self.resource_names

    def _resource_matches(self, attrs: RequestAttributes) -> bool:
        if "*" in self.resources or attrs.combined_resource in self.resources:
            return True
        return bool(attrs.subresource) and f"*/{attrs.subresource}" in self.resources


# What the real server's bootstrap roles system:discovery, system:basic-user and system:public-info-viewer
# give every authenticated user: discovery, OpenAPI, version and health.
DISCOVERY_URLS = (
    "/api", "/api/*", "/apis", "/apis/*", "/openapi", "/openapi/*", "/version", "/version/",
    "/healthz", "/healthz/*", "/readyz", "/readyz/*", "/livez", "/livez/*",
)  # fmt: skip
DISCOVERY_RULES = (Rule(frozenset({"get"}), non_resource_urls=DISCOVERY_URLS),)

SubjectKey = tuple[str, str]  # ("User" | "Group", name); ServiceAccounts become their user name


@dataclass(frozen=True)
class Grant:
    """Rules bound to a subject; namespace "" means everywhere (a ClusterRoleBinding)."""

    namespace: str
    rules: tuple[Rule, ...]
    binding: str


def _meta(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _subject_key(subject: Mapping[str, Any], binding_namespace: str) -> SubjectKey | None:
    kind, name = subject.get("kind"), str(subject.get("name") or "")
    if not name:
        return None
    if kind == "ServiceAccount":
        namespace = str(subject.get("namespace") or binding_namespace)
        return ("User", f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}")
    if kind in ("User", "Group"):
        return (str(kind), name)
    return None


@dataclass
class Policy:
    """Every binding's resolved rules, indexed by subject."""

    grants: dict[SubjectKey, list[Grant]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        roles: Iterable[Mapping[str, Any]],
        cluster_roles: Iterable[Mapping[str, Any]],
        role_bindings: Iterable[Mapping[str, Any]],
        cluster_role_bindings: Iterable[Mapping[str, Any]],
    ) -> Policy:
        def compile_rules(role: Mapping[str, Any]) -> tuple[Rule, ...]:
            rules = role.get("rules") or []
            return tuple(Rule.from_policy_rule(r) for r in rules if isinstance(r, Mapping))

        role_rules = {_meta(r): compile_rules(r) for r in roles}
        cluster_role_rules = {_meta(r)[1]: compile_rules(r) for r in cluster_roles}
        policy = cls()
        for binding, cluster_scoped in [(b, False) for b in role_bindings] + [
            (b, True) for b in cluster_role_bindings
        ]:
            namespace, name = _meta(binding)
            ref = binding.get("roleRef") or {}
            ref_kind, ref_name = ref.get("kind"), str(ref.get("name") or "")
            if ref_kind == "ClusterRole":
                rules = cluster_role_rules.get(ref_name, ())
            elif ref_kind == "Role" and not cluster_scoped:
                rules = role_rules.get((namespace, ref_name), ())
            else:
                continue
            if cluster_scoped:
                namespace = ""
            elif not namespace:
                continue  # a RoleBinding always has a namespace; never let one grant cluster-wide
            kind = "ClusterRoleBinding" if cluster_scoped else "RoleBinding"
            grant = Grant(namespace, rules, f"{kind} {namespace + '/' if namespace else ''}{name}")
            for subject in binding.get("subjects") or []:
                key = _subject_key(subject, namespace) if isinstance(subject, Mapping) else None
                if key is not None:
                    policy.grants.setdefault(key, []).append(grant)
        return policy

    def allows(self, user: UserInfo, attrs: RequestAttributes) -> bool:
        if user.is_master:
            return True
        if (
            not attrs.resource_request
            and AUTHENTICATED in user.groups
            and any(rule.allows(attrs) for rule in DISCOVERY_RULES)
        ):
            return True
        keys = [("User", user.name)] + [("Group", g) for g in user.groups]
        for key in keys:
            for grant in self.grants.get(key, ()):
                # A RoleBinding grants only inside its namespace, and never non-resource URLs.
                if grant.namespace and (not attrs.resource_request or attrs.namespace != grant.namespace):
                    continue
                if any(rule.allows(attrs) for rule in grant.rules):
                    return True
        return False


class Authorizer:
    """Caches the Policy per RBAC generation; `load` returns the four RBAC object lists in the order of
    Policy.build's arguments."""

    def __init__(self, load: Callable[[], Sequence[Iterable[Mapping[str, Any]]]]) -> None:
        self._load = load
        self._generation: int | None = None
        self._policy = Policy()
        self.rebuilds = 0

    def policy(self, generation: int) -> Policy:
        if generation != self._generation:
            roles, cluster_roles, role_bindings, cluster_role_bindings = self._load()
            self._policy = Policy.build(roles, cluster_roles, role_bindings, cluster_role_bindings)
            self._generation = generation
            self.rebuilds += 1
        return self._policy

    def allows(self, user: UserInfo, attrs: RequestAttributes, generation: int) -> bool:
        return user.is_master or self.policy(generation).allows(user, attrs)
