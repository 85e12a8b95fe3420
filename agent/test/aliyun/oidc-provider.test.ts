/** The oidc provider: token command -> STS AssumeRoleWithOIDC -> KMS GetSecretValue, against the test servers. */
import { beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { OidcConfig } from "../../src/config/providers/index.ts";
import { ConfigError } from "../../src/errors.ts";
import { createProvider } from "../../src/providers/index.ts";
import { create } from "../../src/providers/oidc.ts";
import { keyFailure, OIDC_PROVIDER_ARN, ROLE_ARN, useWorld } from "./world.ts";

const KEY = "delta passphrase";
const env = useWorld();
let token: string;
const ctx = () => ({ volume: "delta", configDir: env.dir, freshKey: "allowed" }) as const;
const failure = (c: OidcConfig) => keyFailure(create(c, ctx()));

beforeAll(async () => {
  token = await env.issuer.token();
  // A trailing newline, as most token tools print: it must not reach STS.
  writeFileSync(join(env.dir, "token"), `${token}\n`);
});

function config(
  extra: Partial<OidcConfig> = {},
  aliyun: Partial<NonNullable<OidcConfig["aliyun"]>> = {},
): OidcConfig {
  return {
    type: "oidc",
    tokenCommand: { command: "cat", args: [join(env.dir, "token")], timeoutMs: 5000 },
    keyId: "oidc-key",
    aliyun: {
      oidcProviderArn: OIDC_PROVIDER_ARN,
      roleArn: ROLE_ARN,
      regionId: "cn-beijing",
      stsEndpoint: env.world.url("sts"),
      endpoint: env.world.url("kms"),
      ...aliyun,
    },
    ...extra,
  };
}

describe("oidc provider", () => {
  test("the token goes to STS trimmed, anonymously, and the STS credentials sign GetSecretValue", async () => {
    const before = env.world.requests.length;
    const p = await createProvider(config(), ctx());
    expect(p.describe()).toBe(`oidc secret "oidc-key" via role ${ROLE_ARN} (cn-beijing)`);
    expect(new TextDecoder().decode(await p.getKey())).toBe(KEY);
    const [sts, kms] = env.world.requests.slice(before);
    expect(sts!.params?.OIDCToken).toBe(token);
    expect(sts!.params?.Signature).toBeUndefined();
    expect(sts!.params?.RoleSessionName).toBe("zero-trust-session");
    expect(kms!.params?.SignatureVersion).toBe("1.0");
    expect(kms!.params?.SecretName).toBe("oidc-key");
  });

  test("documented form is explained: what to add, what is not used", () => {
    const documented: OidcConfig = {
      type: "oidc",
      tokenCommand: { command: "cat", args: [], timeoutMs: 1000 },
      kmsInstanceId: "kst-1",
      clientKeyPasswordFromKms: "alias/ck",
    };
    expect(() => create(documented, ctx())).toThrow(ConfigError);
    expect(() => create(documented, ctx())).toThrow(
      /Add key_id .* and a \[kms\] table with type = "aliyun", oidc_provider_arn, role_arn and region_id/,
    );
  });

  test("expired OIDC token: 401 AuthenticationFail.OIDCToken.Expired, not retried", async () => {
    writeFileSync(
      join(env.dir, "expired"),
      await env.issuer.token({ exp: Math.floor(Date.now() / 1000) - 30 }),
    );
    const before = env.world.requests.length;
    const err = await failure(
      config({ tokenCommand: { command: "cat", args: [join(env.dir, "expired")], timeoutMs: 5000 } }),
    );
    expect(err.message).toMatch(
      /AssumeRoleWithOIDC at http:\/\/127\.0\.0\.1:\d+\/: HTTP 401 AuthenticationFail\.OIDCToken\.Expired: This JsonWebToken is expired\./,
    );
    expect(err.hint).toContain("OIDC token was rejected");
    expect(env.world.requests.length).toBe(before + 1);
  });

  test("wrong audience, unknown provider, untrusted role: the STS reason is reported", async () => {
    writeFileSync(join(env.dir, "aud"), await env.issuer.token({ aud: "someone-else" }));
    const audience = await failure(
      config({ tokenCommand: { command: "cat", args: [join(env.dir, "aud")], timeoutMs: 5000 } }),
    );
    expect(audience.message).toContain("AuthenticationFail.OIDCToken.AudienceNotMatch");
    const provider = await failure(config({}, { oidcProviderArn: "acs:ram::1:oidc-provider/nope" }));
    expect(provider.message).toContain("AuthenticationFail.NoPermission: No such OIDC Provider registered.");
    const role = await failure(config({}, { roleArn: "acs:ram::1234567890:role/nope" }));
    expect(role.message).toContain("HTTP 404 EntityNotExist.Role");
  });

  test("token signed by a key the provider does not publish: InvalidSignature", async () => {
    env.world.setFault("sts", { mode: "bad-signature", times: 1 });
    const err = await failure(config());
    expect(err.message).toContain("AuthenticationFail.OIDCToken.InvalidSignature");
  });

  test("STS hands out credentials that are already expired: KMS says so", async () => {
    env.world.setFault("sts", { mode: "expired-token", times: 1 });
    const err = await failure(config());
    expect(err.message).toMatch(/GetSecretValue at .*: HTTP 400 InvalidSecurityToken\.Expired/);
  });

  test("token command failures name the command and never show the token", async () => {
    const failing = await failure(
      config({
        tokenCommand: { command: "sh", args: ["-c", "echo no identity >&2; exit 4"], timeoutMs: 5000 },
      }),
    );
    expect(failing.message).toContain("the token command sh exited with code 4: no identity");
    expect(failing.message).toContain("no identity");
    const empty = await failure(config({ tokenCommand: { command: "true", args: [], timeoutMs: 5000 } }));
    expect(empty.message).toContain("the token command true printed nothing");
    const slow = await failure(config({ tokenCommand: { command: "sleep", args: ["5"], timeoutMs: 200 } }));
    expect(slow.message).toContain("the token command sleep did not finish within 200 ms");
    const missing = await failure(
      config({ tokenCommand: { command: "/nonexistent/token-tool", args: [], timeoutMs: 5000 } }),
    );
    expect(missing.message).toContain("the token command /nonexistent/token-tool could not be started");
  });

  test("a token command leaving a daemon on its stdout fails within seconds, not at the timeout", async () => {
    const started = performance.now();
    const daemon = "printf token-as-argument; setsid sleep 60 &";
    const err = await failure(
      config({ tokenCommand: { command: "sh", args: ["-c", daemon], timeoutMs: 20_000 } }),
    );
    expect(performance.now() - started).toBeLessThan(6000);
    expect(err.message).toContain("the token command sh left process(es)");
    expect(err.message).toContain("the token may be incomplete");
    expect(err.message).not.toContain("token-as-argument");
  }, 30_000);

  test("transient STS throttling is retried, then the key", async () => {
    env.world.setFault("sts", { mode: "throttle", times: 1 });
    const before = env.world.requests.length;
    expect(new TextDecoder().decode(await create(config(), ctx()).getKey())).toBe(KEY);
    expect(env.world.requests.slice(before).map((r) => `${r.service} ${r.status}`)).toEqual([
      "sts 400",
      "sts 200",
      "kms 200",
    ]);
  });
});
