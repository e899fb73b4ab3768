"""The deployment files in deploy/ agree with the service they deploy.

Pure-Python checks (no Docker needed): every operation of openapi.yaml is reachable through Kong
and /metrics is not; Kong, compose, the Keycloak realm and the Dockerfile name the same ports,
hosts, settings, headers, clients and roles as llm_api does.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from lupa.luajit21 import LuaRuntime

from llm_api.auth.authenticator import _GATEWAY_IDENTITY_HEADERS, GATEWAY_SECRET_HEADER
from llm_api.auth.principal import Principal
from llm_api.config import Settings
from llm_api.server.routing import PREFIXES

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SETTINGS_DEFAULTS = Settings()
ALIASES = {field.alias for field in Settings.model_fields.values() if field.alias}
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")

# The ports of the seed deployment: host port = container port for each service.
SEED_PORTS = {"kong": 8000, "llm-api": 8080, "keycloak": 8085, "postgres": 5432}
# Values an operator must provide; compose must stop rather than fall back to a default.
OPERATOR_SECRETS = {
    "POSTGRES_PASSWORD",
    "LLM_API_SECRET_KEY",
    "GATEWAY_SHARED_SECRET",
    "BACKEND_CLIENT_SECRET",
    "KEYCLOAK_ADMIN_PASSWORD",
}
# Kong's fixed plugin priorities (higher runs first in a phase): the secret must be added after
# the client's copies are removed.
KONG_PLUGIN_PRIORITY = {"request-transformer": 801, "post-function": -1000}


# --- loading ---------------------------------------------------------------------------------------


@cache
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


@cache
def kong() -> dict:
    return yaml.safe_load((DEPLOY / "kong" / "kong.yml").read_text())


@cache
def realm() -> dict:
    return json.loads((DEPLOY / "keycloak" / "realm-jan.json").read_text())


@cache
def spec() -> dict:
    return yaml.safe_load((ROOT / "openapi.yaml").read_text())


@cache
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def service(name: str) -> dict:
    return compose()["services"][name]


def environment(name: str) -> dict[str, str | None]:
    """A service's environment; None for a pass-through variable (`NAME:` without a value), which
    the container gets only when the shell or deploy/.env sets it."""
    env = service(name).get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {key: None if value is None else str(value) for key, value in env.items()}


def compose_strings(node: object) -> list[str]:
    """Every string value under a node of compose.yaml (comments excluded)."""
    if isinstance(node, dict):
        return [text for value in node.values() for text in compose_strings(value)]
    if isinstance(node, list):
        return [text for value in node for text in compose_strings(value)]
    return [node] if isinstance(node, str) else []


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, $$."""

    def replace(match: re.Match) -> str:
        name, operator, argument = match.group(1), match.group(2) or "", match.group(3) or ""
        # With a colon, an empty value counts as unset.
        is_set = bool(env.get(name)) if operator.startswith(":") else name in env
        if operator.endswith("?"):
            if not is_set:
                raise KeyError(f"{name}: {argument}")
            return env[name]
        if operator.endswith("-"):
            return env[name] if is_set else argument
        return env.get(name, "")

    value = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}", replace, value)
    return value.replace("$$", "$")


def operator_env() -> dict[str, str]:
    """What an operator's deploy/.env would hold: each required secret, 32+ characters long."""
    return {name: f"{name.lower().replace('_', '-')}-0123456789abcdef0123456789" for name in OPERATOR_SECRETS}


def published_ports(name: str) -> list[tuple[int, int]]:
    """(host port, container port) of a compose service, bind address dropped."""
    pairs = []
    for entry in service(name).get("ports", []):
        parts = str(entry).split(":")
        pairs.append((int(parts[-2]), int(parts[-1].split("/")[0])))
    return pairs


# --- Kong's routing, as its router decides ---------------------------------------------------------


def kong_service() -> dict:
    services = kong()["services"]
    assert len(services) == 1, "kong.yml should hold the one llm-api service"
    return services[0]


def routes() -> list[dict]:
    return kong_service()["routes"]


def route_for(path: str) -> dict | None:
    """The route Kong's router picks for `path`: regex paths (`~...`, anchored at the start) win over
    prefix paths, the higher regex_priority first; among prefix paths the longest wins."""
    regex = [route for route in routes() if any(p.startswith("~") and re.match(p[1:], path) for p in route["paths"])]
    if regex:
        return max(regex, key=lambda route: route.get("regex_priority", 0))
    prefixes = [(len(p), route) for route in routes() for p in route["paths"] if not p.startswith("~") and path.startswith(p)]
    return max(prefixes, key=lambda pair: pair[0])[1] if prefixes else None


def operations() -> list[tuple[str, str, dict]]:
    return [
        (path, method, operation)
        for path, item in spec()["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


def sample_path(template: str) -> str:
    """A concrete path for an OpenAPI path template (`{id}` -> a plausible id with a slash, as model ids have)."""
    return re.sub(r"\{[^}]+\}", "vllm/jan-v1-4b", template)


def plugin_names(plugins: list[dict] | None) -> set[str]:
    return {plugin["name"] for plugin in plugins or []}


def service_plugin(name: str) -> dict:
    matches = [plugin for plugin in kong_service().get("plugins", []) if plugin["name"] == name]
    assert len(matches) == 1, f"kong.yml should configure {name} once on the llm-api service"
    return matches[0]


def test_routes_select_on_paths_only():
    # route_for() models path matching alone; a route that also matched on methods, hosts or headers
    # would make the reachability checks below wrong.
    for route in routes():
        assert route["paths"], route["name"]
        assert not {"methods", "hosts", "headers", "snis"} & route.keys(), route["name"]


def test_every_operation_is_reachable_through_kong():
    for path, method, _ in operations():
        if path == "/metrics":
            continue
        for prefix in PREFIXES:
            concrete = prefix + sample_path(path)
            assert route_for(concrete) is not None, f"{method.upper()} {concrete} matches no Kong route"


def test_metrics_is_not_routed_publicly():
    assert "/metrics" in spec()["paths"]
    for prefix in PREFIXES:
        for path in (f"{prefix}/metrics", f"{prefix}/metrics/"):
            route = route_for(path)
            assert route is None, f"{path} is routed by {route and route['name']}"


def test_routes_forward_paths_unchanged():
    # llm-api serves every route at / and under /llm itself: Kong must not strip anything.
    assert urlsplit(kong_service()["url"]).path in ("", "/")
    for route in routes():
        assert route.get("strip_path") is False, f"{route['name']} must set strip_path: false"


def test_regex_paths_are_ones_kongs_router_accepts():
    # Kong 3's router compiles regex paths with Rust's regex crate: no look-around, no backreferences.
    for route in routes():
        for path in route["paths"]:
            if path.startswith("~"):
                re.compile(path[1:])
                assert not re.search(r"\(\?<?[=!]|\\[1-9]", path), f"{path}: not supported by Kong's router"
            else:
                assert path.startswith("/"), path


def test_rate_limits_follow_the_contract():
    # Operations marked x-rate-limited: false (health) are public and unlimited in llm-api; Kong must
    # not limit them either, and must limit everything else.
    for path, method, operation in operations():
        if path == "/metrics":
            continue
        for prefix in PREFIXES:
            route = route_for(prefix + sample_path(path))
            limited = "rate-limiting" in plugin_names(route.get("plugins"))
            assert limited == operation.get("x-rate-limited", True), (
                f"{method.upper()} {prefix}{path} via {route['name']}: rate-limited={limited}"
            )
    assert "rate-limiting" not in plugin_names(kong_service().get("plugins")), "a service-wide limit would cover health"


def test_kong_rate_limits_suit_db_less_kong_and_llm_apis_headers():
    for route in routes():
        for plugin in route.get("plugins") or []:
            if plugin["name"] != "rate-limiting":
                continue
            config = plugin["config"]
            assert config.get("minute"), route["name"]
            assert config.get("policy", "local") in ("local", "redis"), "DB-less Kong has no 'cluster' policy"
            assert config.get("limit_by", "consumer") in ("consumer", "ip")
            # llm-api's own X-RateLimit-*-Minute headers must reach the client, not Kong's.
            assert config.get("hide_client_headers") is True, route["name"]


def test_kong_service_points_at_the_llm_api_compose_service():
    url = urlsplit(kong_service()["url"])
    assert url.scheme == "http"
    assert url.hostname == "llm-api" and "build" in service("llm-api")
    port = int(environment("llm-api").get("HTTP_PORT", SETTINGS_DEFAULTS.http_port))
    assert url.port == port
    assert (port, port) in published_ports("llm-api")


def test_kong_strips_client_sent_identity_and_secret_headers():
    removed = {name.lower() for name in service_plugin("request-transformer")["config"]["remove"]["headers"]}
    trusted = {GATEWAY_SECRET_HEADER, "X-Auth-Method", *_GATEWAY_IDENTITY_HEADERS}
    assert {name.lower() for name in trusted} <= removed


def test_kong_adds_the_gateway_secret_llm_api_reads():
    lua = "\n".join(service_plugin("post-function")["config"]["access"])
    header = re.search(r'set_header\("([^"]+)",\s*secret\)', lua)
    assert header and header.group(1) == GATEWAY_SECRET_HEADER
    reference = re.search(r'kong\.vault\.get\("\{vault://env/([a-z0-9-]+)\}"\)', lua)
    assert reference, "the secret should come from Kong's env vault"
    # Kong's env vault reads the variable named by the reference, upper-cased, dashes as underscores.
    variable = reference.group(1).upper().replace("-", "_")
    assert variable == Settings.model_fields["gateway_shared_secret"].alias
    # Kong and llm-api get the same value from the operator.
    assert environment("kong")[variable] == environment("llm-api")[variable]
    assert "${" + variable + ":?" in environment("kong")[variable]
    # The removal of client-sent copies runs first, so it cannot undo the addition.
    assert KONG_PLUGIN_PRIORITY["post-function"] < KONG_PLUGIN_PRIORITY["request-transformer"]
    # Nothing else may add a secret: a literal value in kong.yml would be committed to git.
    assert "add" not in service_plugin("request-transformer")["config"]


LUA_HARNESS = """
local code, given = ...
local fn = assert(loadstring(code))
local secret = given ~= "" and given or nil
local seen = {}
setfenv(fn, {
  kong = {
    vault = { get = function(ref) seen.reference = ref; return secret end },
    service = { request = { set_header = function(name, value) seen[name] = value end } },
    log = { err = function(...) seen.logged = true end },
    client = { get_forwarded_ip = function() return "203.0.113.7" end },
  },
  ngx = { var = {} },
})
fn()
local env = getfenv(fn)
return seen.reference, seen["X-Gateway-Secret"], env.ngx.var.upstream_x_forwarded_for, seen.logged
"""


def test_kong_post_function_sets_the_secret_and_the_client_address():
    # Kong runs it in LuaJIT (Lua 5.1 semantics); here in lupa's LuaJIT, against stubs of the few PDK calls it makes.
    harness = LuaRuntime(unpack_returned_tuples=True).execute
    code = service_plugin("post-function")["config"]["access"][0]
    secret = "gateway-secret-0123456789abcdef0123"
    assert harness(LUA_HARNESS, code, secret) == ("{vault://env/gateway-shared-secret}", secret, "203.0.113.7", None)
    # Without the secret configured, nothing is sent and the mistake is logged.
    assert harness(LUA_HARNESS, code, "") == ("{vault://env/gateway-shared-secret}", None, "203.0.113.7", True)


def test_cors_exposes_the_headers_llm_api_answers_with():
    exposed = {name.lower() for name in service_plugin("cors")["config"]["exposed_headers"]}
    documented = {"X-Request-Id", "X-Auth-Method", "X-Principal-Id", "X-RateLimit-Limit-Minute", "X-RateLimit-Remaining-Minute"}
    assert all(name in spec()["info"]["description"] for name in documented)
    in_responses = set()
    for response in spec()["components"]["responses"].values():
        in_responses |= set(response.get("headers", {}))
    for _, _, operation in operations():
        for response in operation.get("responses", {}).values():
            in_responses |= set(response.get("headers", {}))
    assert in_responses, "openapi.yaml declares response headers"
    assert {name.lower() for name in documented | in_responses} <= exposed


# --- compose -----------------------------------------------------------------------------------------


def test_compose_ports_are_the_seeds():
    assert set(compose()["services"]) == set(SEED_PORTS)
    for name, port in SEED_PORTS.items():
        assert published_ports(name) == [(port, port)], name
    assert environment("keycloak")["KC_HTTP_PORT"] == str(SEED_PORTS["keycloak"])
    assert environment("kong")["KONG_PROXY_LISTEN"].endswith(f":{SEED_PORTS['kong']}")


def test_compose_gives_llm_api_only_real_settings():
    unknown = set(environment("llm-api")) - ALIASES
    assert not unknown, f"not settings of llm_api.config.Settings: {sorted(unknown)}"


def test_compose_settings_are_valid_for_llm_api():
    env = {key: interpolate(value, operator_env()) for key, value in environment("llm-api").items() if value is not None}
    settings = Settings.from_env(env)
    # Optional pass-through variables, once an operator sets them, are valid too.
    optional = [key for key, value in environment("llm-api").items() if value is None]
    assert "ADMIN_API_KEY" in optional
    Settings.from_env(
        {**env, "ADMIN_API_KEY": "admin-" + "0123456789" * 4, "VLLM_BASE_URL": "http://host.docker.internal:8001/v1"}
    )
    assert settings.secret_key and settings.gateway_shared_secret and settings.db_dsn
    assert settings.keycloak_mode and settings.backend_client_id and settings.backend_client_secret
    # The database is the compose one.
    dsn = urlsplit(settings.db_dsn)
    postgres = environment("postgres")
    assert (dsn.hostname, dsn.port) == ("postgres", SEED_PORTS["postgres"])
    assert dsn.username == postgres["POSTGRES_USER"] and dsn.path == "/" + postgres["POSTGRES_DB"]
    assert dsn.password == interpolate(postgres["POSTGRES_PASSWORD"], operator_env())
    # Keycloak: reached inside the network, while tokens name its public URL as their issuer.
    keycloak_url = urlsplit(settings.keycloak_base_url)
    assert (keycloak_url.hostname, keycloak_url.port) == ("keycloak", SEED_PORTS["keycloak"])
    public_url = interpolate(environment("keycloak")["KC_HOSTNAME"], {})
    assert settings.token_issuer == f"{public_url}/realms/{settings.keycloak_realm}"


def test_every_operator_secret_is_required_and_documented():
    uses = [use for text in compose_strings(compose()) for use in re.findall(r"\$\{([A-Z0-9_]+)(:?[-?]?)", text)]
    for name, operator in uses:
        if name in OPERATOR_SECRETS:
            assert operator == ":?", f"${{{name}}} must be written ${{{name}:?...}}: no default secret"
    required = {name for name, operator in uses if operator == ":?"}
    assert required == OPERATOR_SECRETS
    example = (DEPLOY / ".env.example").read_text()
    for name in required:
        assert re.search(rf"^{name}=$", example, re.M), f"{name} missing from deploy/.env.example"
    with pytest.raises(KeyError):  # and compose really refuses to start without them
        interpolate(environment("llm-api")["GATEWAY_SHARED_SECRET"], {})


def test_compose_starts_services_in_order():
    healthy = {"llm-api": {"postgres", "keycloak"}, "kong": {"llm-api"}}
    for name, dependencies in healthy.items():
        depends_on = service(name)["depends_on"]
        for dependency in dependencies:
            assert depends_on[dependency]["condition"] == "service_healthy", (name, dependency)
    for name in ("postgres", "keycloak", "kong"):
        assert service(name)["healthcheck"]["test"], name
    # llm-api's healthcheck is the image's own.
    assert any(instruction == "HEALTHCHECK" for instruction, _ in dockerfile())


def test_compose_mounts_the_files_its_services_load():
    kong_env = environment("kong")
    assert kong_env["KONG_DATABASE"] == "off"
    assert f"./kong/kong.yml:{kong_env['KONG_DECLARATIVE_CONFIG']}:ro" in service("kong")["volumes"]
    keycloak = service("keycloak")
    assert "--import-realm" in keycloak["command"]
    assert "./keycloak/realm-jan.json:/opt/keycloak/data/import/realm-jan.json:ro" in keycloak["volumes"]
    healthcheck = " ".join(keycloak["healthcheck"]["test"])
    assert "/health/ready" in healthcheck and environment("keycloak")["KC_HEALTH_ENABLED"] == "true"
    build = service("llm-api")["build"]
    assert (DEPLOY / build["context"]).resolve() == ROOT
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    for name in ("kong", "keycloak"):
        for volume in service(name)["volumes"]:
            if volume.startswith("./"):
                assert (DEPLOY / volume.split(":")[0]).is_file(), volume


# --- Keycloak realm ----------------------------------------------------------------------------------


def realm_client(client_id: str) -> dict:
    matches = [client for client in realm()["clients"] if client["clientId"] == client_id]
    assert len(matches) == 1, f"realm-jan.json should define the client {client_id}"
    return matches[0]


def test_realm_is_the_one_llm_api_expects():
    assert realm()["realm"] == SETTINGS_DEFAULTS.keycloak_realm == environment("llm-api")["KEYCLOAK_REALM"]
    assert realm()["enabled"] is True


def test_realm_has_the_jan_client_for_guest_sign_in():
    client_id = environment("llm-api")["CLIENT"]
    assert client_id == SETTINGS_DEFAULTS.client_id
    client = realm_client(client_id)
    # A public client (the Jan apps hold no secret) with the password grant llm-api signs guests in with.
    assert client["publicClient"] is True and client["directAccessGrantsEnabled"] is True
    assert "secret" not in client


def test_realm_tokens_carry_the_audience_llm_api_checks():
    account = environment("llm-api")["ACCOUNT"]
    assert account == SETTINGS_DEFAULTS.account
    audiences = [
        mapper["config"]
        for mapper in realm_client(SETTINGS_DEFAULTS.client_id)["protocolMappers"]
        if mapper["protocolMapper"] == "oidc-audience-mapper"
    ]
    assert any(
        config.get("included.custom.audience") == account and config.get("access.token.claim") == "true" for config in audiences
    )


def test_realm_has_the_guest_and_admin_roles():
    roles = {role["name"] for role in realm()["roles"]["realm"]}
    guest_role = environment("llm-api")["GUEST_ROLE"]
    assert guest_role == SETTINGS_DEFAULTS.guest_role and guest_role in roles
    assert any(Principal(user_id="u", subject="s", issuer="i", auth_method="jwt", roles=(role,)).is_admin for role in roles)
    # Guests have no first or last name: a required action (Keycloak 24+ verifies the profile) would
    # make their password sign-in fail with "Account is not fully set up".
    assert realm()["requiredActions"] == []


def test_backend_client_can_provision_guests():
    env = environment("llm-api")
    client = realm_client(env["BACKEND_CLIENT_ID"])
    assert client["publicClient"] is False and client["serviceAccountsEnabled"] is True
    # Its secret is substituted from Keycloak's environment on import, never written in the file.
    assert client["secret"] == "${BACKEND_CLIENT_SECRET}"
    assert environment("keycloak")["BACKEND_CLIENT_SECRET"] == env["BACKEND_CLIENT_SECRET"]
    # llm_api/auth/keycloak.py creates users, reads the guest role, maps it and sets a password.
    account = [user for user in realm()["users"] if user.get("serviceAccountClientId") == client["clientId"]]
    assert len(account) == 1
    granted = set(account[0]["clientRoles"]["realm-management"])
    assert {"manage-users", "view-realm"} <= granted


def test_realm_placeholders_are_all_provided_to_keycloak():
    placeholders = set(re.findall(r"\$\{([^}:]+)", (DEPLOY / "keycloak" / "realm-jan.json").read_text()))
    assert placeholders <= set(environment("keycloak")), placeholders - set(environment("keycloak"))


# --- Dockerfile --------------------------------------------------------------------------------------


def test_dockerfile_runs_as_an_unprivileged_user():
    users = [arguments.split(":")[0] for instruction, arguments in dockerfile() if instruction == "USER"]
    assert users, "the image must set USER"
    assert users[-1] not in ("root", "0")


def test_dockerfile_healthcheck_probes_a_real_public_route():
    (arguments,) = [arguments for instruction, arguments in dockerfile() if instruction == "HEALTHCHECK"]
    command = json.loads(arguments[arguments.index("CMD") + 3 :].strip())
    assert command[:2] == ["python", "-c"]
    compile(command[2], "<healthcheck>", "exec")
    path = re.search(r"https?://[^/'\"]+(/[^'\"]*)", command[2]).group(1)
    assert path in spec()["paths"]
    assert spec()["paths"][path]["get"].get("security") == []


def test_dockerfile_serves_on_the_settings_port():
    exposed = [arguments for instruction, arguments in dockerfile() if instruction == "EXPOSE"]
    assert exposed == [str(SETTINGS_DEFAULTS.http_port)]
    cmd = [json.loads(arguments) for instruction, arguments in dockerfile() if instruction == "CMD"]
    assert cmd[-1] == ["llm-api", "serve"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "llm-api" in scripts
    images = [arguments.split()[0] for instruction, arguments in dockerfile() if instruction == "FROM"]
    assert images and all(image == "python:3.11-slim" for image in images)


def test_dockerfile_copies_everything_the_package_build_needs():
    copied = set()
    for instruction, arguments in dockerfile():
        if instruction == "COPY" and not arguments.startswith("--from"):
            copied |= set(shlex.split(arguments)[:-1])
    for source in copied:
        assert (ROOT / source).exists(), source
    # The package's symlinks (openapi.yaml, migrations) must resolve inside the image too.
    for link in (ROOT / "llm_api").rglob("*"):
        if link.is_symlink():
            target = link.resolve().relative_to(ROOT)
            assert str(target.parts[0]) in copied, f"{link.relative_to(ROOT)} -> {target} is not copied"
    # And the build context lets those files through (an allowlist).
    allowed = {
        line[1:].rstrip("/") for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines() if line.startswith("!")
    }
    assert copied <= allowed, copied - allowed


# --- Docker itself, when it is installed ---------------------------------------------------------------
