/** The kms provider against the test KMS instance, gateway and IMDS, both auth modes and both config forms. */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeCa } from "../../../vm-test/aliyun/material.ts";
import type { KmsConfig } from "../../src/config/providers/index.ts";
import { ConfigError } from "../../src/errors.ts";
import { createProvider } from "../../src/providers/index.ts";
import { MAX_KEY_BYTES } from "../../src/providers/key-size.ts";
import { create } from "../../src/providers/kms.ts";
import { ECS_ROLE, keyFailure, testMaterial, useWorld, withWorld } from "./world.ts";

const KEY = "rootfs passphrase";
const env = useWorld();
const ctx = () => ({ volume: "rootfs", configDir: env.dir, freshKey: "never" }) as const;
const failure = (config: KmsConfig) => keyFailure(create(config, ctx()));

function clientKeyConfig(extra: Partial<KmsConfig> = {}): KmsConfig {
  const m = testMaterial();
  return {
    type: "kms",
    kmsInstanceId: m.kmsInstanceId,
    secretName: "disk-key",
    authMode: "client_key",
    clientKey: m.clientKey.json,
    clientKeyPassword: m.clientKey.passwordFile,
    kmsCertPem: m.caPem,
    endpoint: env.world.url("instance"),
    ...extra,
  };
}

function ramRoleConfig(extra: Partial<KmsConfig> = {}): KmsConfig {
  return {
    type: "kms",
    kmsInstanceId: "kst-unused",
    secretName: "disk-key",
    authMode: "ecs_ram_role",
    endpoint: env.world.url("kms"),
    imdsEndpoint: env.world.url("imds"),
    ...extra,
  };
}

describe("kms provider, client key", () => {
  test("createProvider dispatches to it and describe() names secret and instance", async () => {
    const p = await createProvider(clientKeyConfig(), ctx());
    expect(p.describe()).toBe(`kms secret "disk-key" via client key of ${testMaterial().kmsInstanceId}`);
  });

  test("client_key, client_key_password_file and kms_cert_pem as paths relative to the config dir", async () => {
    const m = testMaterial();
    writeFileSync(join(env.dir, "ck.json"), m.clientKey.json);
    writeFileSync(join(env.dir, "pw.txt"), m.clientKey.passwordFile);
    writeFileSync(join(env.dir, "ca.pem"), m.caPem);
    const config = clientKeyConfig({
      clientKey: "ck.json",
      clientKeyPassword: undefined,
      clientKeyPasswordFile: "pw.txt",
      kmsCertPem: join(env.dir, "ca.pem"),
    });
    expect(new TextDecoder().decode(await create(config, ctx()).getKey())).toBe(KEY);
  });

  test("documented form: client_key_id finds the console-named files in the config dir", async () => {
    const m = testMaterial();
    const sub = mkdtempSync(join(env.dir, "documented-"));
    const config: KmsConfig = {
      type: "kms",
      kmsInstanceId: m.kmsInstanceId,
      authMode: "client_key",
      clientKeyId: m.clientKey.keyId,
      clientKeyPasswordFromKms: "alias/ClientKey_x",
      endpoint: env.world.url("instance"),
    };
    const c = { volume: "rootfs", configDir: sub, freshKey: "never" } as const;
    expect(() => create(config, c)).toThrow(ConfigError);
    expect(() => create(config, c)).toThrow(/secret_name is missing.*documented form/s);
    const withName = { ...config, secretName: "disk-key" };
    expect(() => create(withName, c)).toThrow(
      /still needs client_key \(or the file .*clientKey_KAAP\..*\.json\), client_key_password \(or the file .*_Password\.txt\), kms_cert_pem \(or the file .*PrivateKmsCA_kst-/,
    );
    writeFileSync(join(sub, `clientKey_${m.clientKey.keyId}.json`), m.clientKey.json);
    writeFileSync(join(sub, `clientKey_${m.clientKey.keyId}_Password.txt`), m.clientKey.passwordFile);
    writeFileSync(join(sub, `PrivateKmsCA_${m.kmsInstanceId}.pem`), m.caPem);
    expect(new TextDecoder().decode(await create(withName, c).getKey())).toBe(KEY);
    const mismatched = {
      ...withName,
      clientKeyId: "KAAP.other",
      clientKey: m.clientKey.json,
      clientKeyPassword: "x",
      kmsCertPem: m.caPem,
    };
    expect(() => create(mismatched, c)).toThrow(
      `client_key_id is KAAP.other but client_key holds client key ${m.clientKey.keyId}`,
    );
  });

  test("TLS is pinned to kms_cert_pem: a certificate from another CA is refused without retrying", async () => {
    const other = makeCa(mkdtempSync(join(env.dir, "ca-")), "other", "Another CA");
    const before = env.world.requests.length;
    const started = Date.now();
    const err = await failure(clientKeyConfig({ kmsCertPem: other.certPem }));
    expect(err.message).toContain("TLS certificate not trusted");
    expect(err.hint).toContain("kms_cert_pem");
    // A retry would first wait 500 ms, then 1, 2 and 4 s.
    expect(Date.now() - started).toBeLessThan(3000);
    expect(env.world.requests.length).toBe(before);
  });

  test("a secret that is not base64 text is refused (cryptpilot base64-decodes KMS secrets)", async () => {
    const err = await failure(clientKeyConfig({ secretName: "oidc-key" }));
    expect(err.message).toContain('the value of secret "oidc-key" is not base64 text');
    expect(err.message).not.toContain("delta passphrase");
  });

  test("unknown secret: HTTP 404 Forbidden.KeyNotFound, not retried", async () => {
    const before = env.world.requests.length;
    const err = await failure(clientKeyConfig({ secretName: "missing" }));
    expect(err.message).toMatch(
      /GetSecretValue at https:\/\/127\.0\.0\.1:\d+\/: HTTP 404 Forbidden\.KeyNotFound: The specified secret missing is not found/,
    );
    expect(env.world.requests.length).toBe(before + 1);
  });

  test("bad signature: HTTP 401 SignatureNotMatch with a hint, not retried", async () => {
    env.world.setFault("instance", { mode: "bad-signature" });
    try {
      const before = env.world.requests.length;
      const err = await failure(clientKeyConfig());
      expect(err.message).toContain("HTTP 401 SignatureNotMatch");
      expect(err.hint).toContain("signature was rejected");
      expect(env.world.requests.length).toBe(before + 1);
    } finally {
      env.world.setFault("instance", undefined);
    }
  });

  test("transient 5xx: retried with backoff, then the key", async () => {
    env.world.setFault("instance", { mode: "5xx", times: 2 });
    const before = env.world.requests.length;
    expect(new TextDecoder().decode(await create(clientKeyConfig(), ctx()).getKey())).toBe(KEY);
    expect(env.world.requests.slice(before).map((r) => r.status)).toEqual([503, 503, 200]);
  });
});

describe("kms provider, key size", () => {
  test("a secret decoding to more than MAX_KEY_BYTES is refused; exactly MAX_KEY_BYTES is a key", async () => {
    const b64 = (n: number) => Buffer.from(new Uint8Array(n).fill(7)).toString("base64");
    const secrets = { over: b64(MAX_KEY_BYTES + 1), max: b64(MAX_KEY_BYTES) };
    await withWorld({ secrets }, async (w) => {
      const endpoint = w.url("instance");
      const err = await failure(clientKeyConfig({ endpoint, secretName: "over" }));
      expect(err.message).toContain(
        `the value of secret "over" is ${MAX_KEY_BYTES + 1} bytes, more than the 64 KiB a key may have`,
      );
      const key = await create(clientKeyConfig({ endpoint, secretName: "max" }), ctx()).getKey();
      expect(key.length).toBe(MAX_KEY_BYTES);
    });
  });
});

describe("kms provider, instance demanding a TLS client certificate", () => {
  test("the client key's certificate is presented (as the official SDK does)", async () => {
    await withWorld({ instanceRequireClientCert: true }, async (w) => {
      const key = await create(clientKeyConfig({ endpoint: w.url("instance") }), ctx()).getKey();
      expect(new TextDecoder().decode(key)).toBe(KEY);
      // Without a certificate that server refuses the handshake; the default one answers.
      const bare = (url: string) =>
        fetch(url, { method: "POST", tls: { ca: testMaterial().caPem } } as RequestInit).then(
          () => "answered",
          () => "refused",
        );
      expect(await bare(env.world.url("instance"))).toBe("answered");
      expect(await bare(w.url("instance"))).toBe("refused");
    });
  });
});

describe("kms provider, ECS RAM role", () => {
  test("discovers region and role over IMDSv2 and signs with the role's STS credentials", async () => {
    const before = env.world.requests.length;
    expect(new TextDecoder().decode(await create(ramRoleConfig(), ctx()).getKey())).toBe(KEY);
    const seen = env.world.requests.slice(before);
    expect(seen.map((r) => `${r.service} ${r.action}`)).toEqual([
      "imds PUT /latest/api/token",
      "imds GET /latest/meta-data/region-id",
      "imds GET /latest/meta-data/ram/security-credentials/",
      `imds GET /latest/meta-data/ram/security-credentials/${ECS_ROLE}`,
      "kms GetSecretValue",
    ]);
    expect(seen.slice(1, 4).every((r) => r.headers["x-aliyun-ecs-metadata-token"])).toBe(true);
    expect(seen[4]!.params?.RegionId).toBe("cn-beijing");
    expect(seen[4]!.params?.SecurityToken).toStartWith("CAIS");
  });

  test("explicit role and region skip discovery", async () => {
    const before = env.world.requests.length;
    await create(ramRoleConfig({ ecsRamRoleName: ECS_ROLE, regionId: "cn-beijing" }), ctx()).getKey();
    expect(env.world.requests.slice(before).map((r) => r.action)).toEqual([
      "PUT /latest/api/token",
      `GET /latest/meta-data/ram/security-credentials/${ECS_ROLE}`,
      "GetSecretValue",
    ]);
  });

  test("expired role credentials: InvalidSecurityToken.Expired, named clearly", async () => {
    env.world.setFault("imds", { mode: "expired-token" });
    try {
      const err = await failure(ramRoleConfig({ ecsRamRoleName: ECS_ROLE, regionId: "cn-beijing" }));
      expect(err.message).toContain(
        "HTTP 400 InvalidSecurityToken.Expired: Specified SecurityToken is expired.",
      );
      expect(err.hint).toContain("security token");
    } finally {
      env.world.setFault("imds", undefined);
    }
  });
});

describe("kms provider, IMDS variants", () => {
  const cases = [
    ["IMDSv1 only (token endpoint absent)", { imdsWithoutV2: true }, false],
    ["hardened instance (IMDSv2 required)", { imdsRequireV2: true }, true],
  ] as const;
  for (const [name, opts, v2] of cases) {
    test(name, async () => {
      await withWorld(opts, async (w) => {
        const key = await create(
          ramRoleConfig({ endpoint: w.url("kms"), imdsEndpoint: w.url("imds") }),
          ctx(),
        ).getKey();
        expect(new TextDecoder().decode(key)).toBe(KEY);
        const gets = w.requests.filter((r) => r.action.startsWith("GET"));
        expect(gets.every((r) => Boolean(r.headers["x-aliyun-ecs-metadata-token"]) === v2)).toBe(true);
      });
    });
  }

  test("no RAM role bound: the metadata service's 404 is explained", async () => {
    await withWorld({ ecsRoles: [] }, async (w) => {
      const err = await failure(ramRoleConfig({ endpoint: w.url("kms"), imdsEndpoint: w.url("imds") }));
      expect(err.message).toMatch(
        /GET \/latest\/meta-data\/ram\/security-credentials\/ at http:\/\/127\.0\.0\.1:\d+: HTTP 404: no RAM role is bound to this ECS instance/,
      );
    });
  });

  test("several bound roles without ecs_ram_role_name: told to name one", async () => {
    await withWorld({ ecsRoles: ["RoleA", "RoleB"] }, async (w) => {
      const err = await failure(ramRoleConfig({ endpoint: w.url("kms"), imdsEndpoint: w.url("imds") }));
      expect(err.message).toContain("2 RAM roles are bound (RoleA, RoleB)");
      expect(err.hint).toContain("ecs_ram_role_name");
    });
  });
});
