/** The kms provider against the test KMS instance, gateway and IMDS, both auth modes and both config forms. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeCa } from "../../../vm-test/aliyun/material.ts";
import type { AliyunWorld } from "../../../vm-test/aliyun/servers.ts";
import type { KmsConfig } from "../../src/config/providers.ts";
import { ConfigError, KeyProviderError } from "../../src/errors.ts";
import { createProvider } from "../../src/providers/index.ts";
import { create } from "../../src/providers/kms.ts";
import { describeProviderConformance } from "../providers/conformance.ts";
import { ECS_ROLE, makeIssuer, SETUP_TIMEOUT_MS, startWorld, testMaterial } from "./world.ts";

const KEY = "rootfs passphrase";
let world: AliyunWorld;
let dir: string;

beforeAll(async () => {
  world = await startWorld(await makeIssuer());
  dir = mkdtempSync(join(tmpdir(), "kms-provider-"));
}, SETUP_TIMEOUT_MS);
afterAll(() => {
  world?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const ctx = () => ({ volume: "rootfs", configDir: dir });

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
    endpoint: world.url("instance"),
    ...extra,
  };
}

function ramRoleConfig(extra: Partial<KmsConfig> = {}): KmsConfig {
  return {
    type: "kms",
    kmsInstanceId: "kst-unused",
    secretName: "disk-key",
    authMode: "ecs_ram_role",
    endpoint: world.url("kms"),
    imdsEndpoint: world.url("imds"),
    ...extra,
  };
}

async function failure(config: KmsConfig): Promise<KeyProviderError> {
  const err = await create(config, ctx())
    .getKey()
    .then(
      () => undefined,
      (e) => e,
    );
  expect(err).toBeInstanceOf(KeyProviderError);
  return err as KeyProviderError;
}

describeProviderConformance("kms", () => {
  const m = testMaterial();
  return {
    provider: () => create(clientKeyConfig(), ctx()),
    failing: () => create(clientKeyConfig({ clientKeyPassword: "wrong-password-123" }), ctx()),
    expectedKey: new TextEncoder().encode(KEY),
    secrets: [
      m.clientKey.password,
      "wrong-password-123",
      JSON.parse(m.clientKey.json).PrivateKeyData.slice(0, 40),
    ],
  };
});

describeProviderConformance("kms", () => ({
  provider: () => create(ramRoleConfig(), ctx()),
  failing: () => create(ramRoleConfig({ secretName: "other-team-key" }), ctx()),
  expectedKey: new TextEncoder().encode(KEY),
}));

describe("kms provider, client key", () => {
  test("createProvider dispatches to it and describe() names secret and instance", async () => {
    const p = await createProvider(clientKeyConfig(), ctx());
    expect(p.describe()).toBe(`kms secret "disk-key" via client key of ${testMaterial().kmsInstanceId}`);
  });

  test("client_key, client_key_password_file and kms_cert_pem as paths relative to the config dir", async () => {
    const m = testMaterial();
    writeFileSync(join(dir, "ck.json"), m.clientKey.json);
    writeFileSync(join(dir, "pw.txt"), m.clientKey.passwordFile);
    writeFileSync(join(dir, "ca.pem"), m.caPem);
    const config = clientKeyConfig({
      clientKey: "ck.json",
      clientKeyPassword: undefined,
      clientKeyPasswordFile: "pw.txt",
      kmsCertPem: join(dir, "ca.pem"),
    });
    expect(new TextDecoder().decode(await create(config, ctx()).getKey())).toBe(KEY);
  });

  test("documented form: client_key_id finds the console-named files in the config dir", async () => {
    const m = testMaterial();
    const sub = mkdtempSync(join(dir, "documented-"));
    const config: KmsConfig = {
      type: "kms",
      kmsInstanceId: m.kmsInstanceId,
      authMode: "client_key",
      clientKeyId: m.clientKey.keyId,
      clientKeyPasswordFromKms: "alias/ClientKey_x",
      endpoint: world.url("instance"),
    };
    const c = { volume: "rootfs", configDir: sub };
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
    const other = makeCa(mkdtempSync(join(dir, "ca-")), "other", "Another CA");
    const before = world.requests.length;
    const started = Date.now();
    const err = await failure(clientKeyConfig({ kmsCertPem: other.certPem }));
    expect(err.message).toContain("TLS server certificate not trusted");
    expect(err.hint).toContain("kms_cert_pem");
    // A retry would first wait 500 ms, then 1, 2 and 4 s.
    expect(Date.now() - started).toBeLessThan(3000);
    expect(world.requests.length).toBe(before);
  });

  test("a secret that is not base64 text is refused (cryptpilot base64-decodes KMS secrets)", async () => {
    const err = await failure(clientKeyConfig({ secretName: "oidc-key" }));
    expect(err.message).toContain('the value of secret "oidc-key" is not base64 text');
    expect(err.message).not.toContain("delta passphrase");
  });

  test("unknown secret: HTTP 404 Forbidden.KeyNotFound, not retried", async () => {
    const before = world.requests.length;
    const err = await failure(clientKeyConfig({ secretName: "missing" }));
    expect(err.message).toMatch(
      /GetSecretValue at https:\/\/127\.0\.0\.1:\d+\/: HTTP 404 Forbidden\.KeyNotFound: The specified secret missing is not found/,
    );
    expect(world.requests.length).toBe(before + 1);
  });

  test("bad signature: HTTP 401 SignatureNotMatch with a hint, not retried", async () => {
    world.setFault("instance", { mode: "bad-signature" });
    try {
      const before = world.requests.length;
      const err = await failure(clientKeyConfig());
      expect(err.message).toContain("HTTP 401 SignatureNotMatch");
      expect(err.hint).toContain("signature was rejected");
      expect(world.requests.length).toBe(before + 1);
    } finally {
      world.setFault("instance", undefined);
    }
  });

  test("transient 5xx: retried with backoff, then the key", async () => {
    world.setFault("instance", { mode: "5xx", times: 2 });
    const before = world.requests.length;
    expect(new TextDecoder().decode(await create(clientKeyConfig(), ctx()).getKey())).toBe(KEY);
    expect(world.requests.slice(before).map((r) => r.status)).toEqual([503, 503, 200]);
  });
});

describe("kms provider, instance demanding a TLS client certificate", () => {
  test("the client key's certificate is presented (as the official SDK does)", async () => {
    const w = await startWorld(await makeIssuer(), { instanceRequireClientCert: true });
    try {
      const key = await create(clientKeyConfig({ endpoint: w.url("instance") }), ctx()).getKey();
      expect(new TextDecoder().decode(key)).toBe(KEY);
      // Without a certificate that server refuses the handshake; the default one answers.
      const bare = (url: string) =>
        fetch(url, { method: "POST", tls: { ca: testMaterial().caPem } } as RequestInit).then(
          () => "answered",
          () => "refused",
        );
      expect(await bare(world.url("instance"))).toBe("answered");
      expect(await bare(w.url("instance"))).toBe("refused");
    } finally {
      w.stop();
    }
  });
});

describe("kms provider, ECS RAM role", () => {
  test("discovers region and role over IMDSv2 and signs with the role's STS credentials", async () => {
    const before = world.requests.length;
    expect(new TextDecoder().decode(await create(ramRoleConfig(), ctx()).getKey())).toBe(KEY);
    const seen = world.requests.slice(before);
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
    const before = world.requests.length;
    await create(ramRoleConfig({ ecsRamRoleName: ECS_ROLE, regionId: "cn-beijing" }), ctx()).getKey();
    expect(world.requests.slice(before).map((r) => r.action)).toEqual([
      "PUT /latest/api/token",
      `GET /latest/meta-data/ram/security-credentials/${ECS_ROLE}`,
      "GetSecretValue",
    ]);
  });

  test("expired role credentials: InvalidSecurityToken.Expired, named clearly", async () => {
    world.setFault("imds", { mode: "expired-token" });
    try {
      const err = await failure(ramRoleConfig({ ecsRamRoleName: ECS_ROLE, regionId: "cn-beijing" }));
      expect(err.message).toContain(
        "HTTP 400 InvalidSecurityToken.Expired: Specified SecurityToken is expired.",
      );
      expect(err.hint).toContain("security token");
    } finally {
      world.setFault("imds", undefined);
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
      const w = await startWorld(await makeIssuer(), opts);
      try {
        const key = await create(
          ramRoleConfig({ endpoint: w.url("kms"), imdsEndpoint: w.url("imds") }),
          ctx(),
        ).getKey();
        expect(new TextDecoder().decode(key)).toBe(KEY);
        const gets = w.requests.filter((r) => r.action.startsWith("GET"));
        expect(gets.every((r) => Boolean(r.headers["x-aliyun-ecs-metadata-token"]) === v2)).toBe(true);
      } finally {
        w.stop();
      }
    });
  }

  test("no RAM role bound: the metadata service's 404 is explained", async () => {
    const w = await startWorld(await makeIssuer(), { ecsRoles: [] });
    try {
      const err = await failure(ramRoleConfig({ endpoint: w.url("kms"), imdsEndpoint: w.url("imds") }));
      expect(err.message).toMatch(
        /GET \/latest\/meta-data\/ram\/security-credentials\/ at http:\/\/127\.0\.0\.1:\d+: HTTP 404: no RAM role is bound to this ECS instance/,
      );
    } finally {
      w.stop();
    }
  });

  test("several bound roles without ecs_ram_role_name: told to name one", async () => {
    const w = await startWorld(await makeIssuer(), { ecsRoles: ["RoleA", "RoleB"] });
    try {
      const err = await failure(ramRoleConfig({ endpoint: w.url("kms"), imdsEndpoint: w.url("imds") }));
      expect(err.message).toContain("2 RAM roles are bound (RoleA, RoleB)");
      expect(err.hint).toContain("ecs_ram_role_name");
    } finally {
      w.stop();
    }
  });
});
