import { describe, expect, test } from "bun:test";
// Owners of kbs/kms/oidc/tpm2 add fields with defaults, hence toMatchObject for those providers.
import { stringify } from "smol-toml";
import * as v from "valibot";
import {
  type ConfigIssue,
  EncryptSchema,
  type ProviderConfig,
  parseToml,
  providerToToml,
} from "../../src/config/index.ts";
import { issuesFromValibot } from "../../src/config/issues.ts";

/** Parse `[encrypt.<provider>]` TOML as a volume's encrypt table. */
function parseEncrypt(text: string): { config?: ProviderConfig; issues: ConfigIssue[] } {
  const source = parseToml("volume.toml", text);
  const result = v.safeParse(EncryptSchema, source.data.encrypt, { abortEarly: false });
  if (result.success) return { config: result.output, issues: [] };
  // Paths are relative to the encrypt table; prefix them to find lines in the file.
  const issues = result.issues.map((issue) => ({
    ...issue,
    path: [
      { type: "object", origin: "value", input: source.data, key: "encrypt", value: source.data.encrypt },
      ...(issue.path ?? []),
    ],
  })) as v.BaseIssue<unknown>[];
  return { issues: issuesFromValibot("volume.toml", text, issues) };
}

function ok(text: string): ProviderConfig {
  const { config, issues } = parseEncrypt(text);
  if (!config) throw new Error(`unexpected issues: ${JSON.stringify(issues)}`);
  // Every normalised config survives the dump (upstream names) and loads back the same.
  const again = parseEncrypt(stringify({ encrypt: providerToToml(config) }));
  expect(again.config).toEqual(config);
  return config;
}

function bad(text: string): ConfigIssue {
  const { config, issues } = parseEncrypt(text);
  expect(config).toBeUndefined();
  return issues[0]!;
}

const PEM = '"""\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"""';

describe("exec", () => {
  test("upstream form; args default []; timeout_secs default 30 s", () => {
    expect(ok('[encrypt.exec]\ncommand = "/bin/getkey"\n')).toEqual({
      type: "exec",
      command: "/bin/getkey",
      args: [],
      timeoutMs: 30_000,
    });
    expect(ok('[encrypt.exec]\ncommand = "x"\nargs = ["a"]\ntimeout_secs = 2.5\n')).toMatchObject({
      args: ["a"],
      timeoutMs: 2500,
    });
  });
  test("rejected: missing command, empty command, args not strings, zero timeout, unknown field", () => {
    expect(bad("[encrypt.exec]\nargs = []\n")).toMatchObject({ field: "encrypt.exec.command", line: 1 });
    expect(bad('[encrypt.exec]\ncommand = ""\n')).toMatchObject({ line: 2, message: "must not be empty" });
    expect(bad('[encrypt.exec]\ncommand = "x"\nargs = [1]\n')).toMatchObject({
      line: 3,
      field: "encrypt.exec.args.0",
    });
    expect(bad('[encrypt.exec]\ncommand = "x"\ntimeout_secs = 0\n')).toMatchObject({
      line: 3,
      message: "must be positive",
    });
    expect(bad('[encrypt.exec]\ncommand = "x"\nshell = true\n')).toMatchObject({
      line: 3,
      field: "encrypt.exec.shell",
      message: "unknown field 'shell'; the fields here are: command, args, timeout_secs",
    });
  });
});

describe("otp", () => {
  test("empty table; any field is unknown", () => {
    expect(ok("[encrypt.otp]\n")).toEqual({ type: "otp" });
    expect(bad("[encrypt.otp]\nlength = 32\n")).toMatchObject({ line: 2, field: "encrypt.otp.length" });
  });
});

describe("kbs", () => {
  test("upstream one-shot with root cert", () => {
    expect(
      ok(
        `[encrypt.kbs]\ncdh_type = "one-shot"\nkbs_url = "https://kbs:8080/"\nkey_uri = "kbs:///default/key/rootfs"\nkbs_root_cert = ${PEM}\n`,
      ),
    ).toMatchObject({
      type: "kbs",
      cdhType: "one-shot",
      url: "https://kbs:8080",
      resourcePath: "default/key/rootfs",
      rootCert: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    });
  });
  test("upstream daemon: socket default", () => {
    expect(ok('[encrypt.kbs]\ncdh_type = "daemon"\nkey_uri = "kbs:///default/key/delta"\n')).toMatchObject({
      type: "kbs",
      cdhType: "daemon",
      resourcePath: "default/key/delta",
      cdhSocket: "unix:///run/confidential-containers/cdh.sock",
    });
  });
  test("documented form: url + resource_path; tee override", () => {
    expect(
      ok(
        '[encrypt.kbs]\nurl = "http://10.0.2.2:8080"\nresource_path = "/secrets/rootfs-key"\ntee = "sample"\n',
      ),
    ).toMatchObject({
      type: "kbs",
      cdhType: "one-shot",
      url: "http://10.0.2.2:8080",
      resourcePath: "secrets/rootfs-key",
      tee: "sample",
    });
  });
  test("rejected: mixed forms, missing url or resource, bad URI, daemon with url, bad cert", () => {
    expect(
      bad('[encrypt.kbs]\nkbs_url = "http://a"\nurl = "http://a"\nkey_uri = "kbs:///a/b/c"\n'),
    ).toMatchObject({
      line: 3,
      message: "give either kbs_url or url, not both",
    });
    expect(bad('[encrypt.kbs]\nkey_uri = "kbs:///a/b/c"\n').message).toContain(
      "kbs_url (or url) is required",
    );
    expect(bad('[encrypt.kbs]\nurl = "http://a"\n').message).toContain("key_uri");
    expect(bad('[encrypt.kbs]\nurl = "http://a"\nkey_uri = "default/key/x"\n')).toMatchObject({
      line: 3,
      field: "encrypt.kbs.key_uri",
    });
    expect(bad('[encrypt.kbs]\nurl = "kbs.example.com"\nkey_uri = "kbs:///a/b/c"\n')).toMatchObject({
      line: 2,
    });
    expect(
      bad('[encrypt.kbs]\ncdh_type = "daemon"\nurl = "http://a"\nkey_uri = "kbs:///a/b/c"\n'),
    ).toMatchObject({
      line: 3,
      field: "encrypt.kbs.url",
    });
    expect(bad('[encrypt.kbs]\ncdh_type = "grpc"\nkey_uri = "kbs:///a/b/c"\n')).toMatchObject({ line: 2 });
    expect(
      bad('[encrypt.kbs]\nurl = "http://a"\nkey_uri = "kbs:///a/b/c"\nkbs_root_cert = "abc"\n'),
    ).toMatchObject({
      line: 4,
      message: "must be a PEM certificate",
    });
  });
});

describe("kms", () => {
  test("upstream client key", () => {
    expect(
      ok(
        `[encrypt.kms]\nkms_instance_id = "kst-1"\nsecret_name = "s"\nclient_key = '{"KeyId":"KAAP.1"}'\nclient_key_password = "pw"\nkms_cert_pem = ${PEM}\n`,
      ),
    ).toMatchObject({
      type: "kms",
      kmsInstanceId: "kst-1",
      secretName: "s",
      authMode: "client_key",
      clientKeyPassword: "pw",
    });
  });
  test("upstream ECS RAM role: minimal and explicit", () => {
    expect(
      ok('[encrypt.kms]\nauth_mode = "ecs_ram_role"\nkms_instance_id = "kst-1"\nsecret_name = "s"\n'),
    ).toMatchObject({
      type: "kms",
      kmsInstanceId: "kst-1",
      secretName: "s",
      authMode: "ecs_ram_role",
    });
    expect(
      ok(
        '[encrypt.kms]\nauth_mode = "ecs_ram_role"\nkms_instance_id = "k"\nsecret_name = "s"\necs_ram_role_name = "R"\nregion_id = "cn-shanghai"\n',
      ),
    ).toMatchObject({ ecsRamRoleName: "R", regionId: "cn-shanghai" });
  });
  test("documented form: client_key_id + client_key_password_from_kms", () => {
    expect(
      ok(
        '[encrypt.kms]\nkms_instance_id = "kst-1"\nclient_key_id = "LTAI1"\nclient_key_password_from_kms = "alias/ck"\n',
      ),
    ).toMatchObject({
      type: "kms",
      kmsInstanceId: "kst-1",
      authMode: "client_key",
      clientKeyId: "LTAI1",
      clientKeyPasswordFromKms: "alias/ck",
    });
  });
  test("rejected: missing pieces name what is needed; RAM role with a client key; unknown auth_mode", () => {
    expect(
      bad('[encrypt.kms]\nkms_instance_id = "k"\nsecret_name = "s"\nclient_key = "{}"\n').message,
    ).toContain("client-key authentication needs client_key_password, kms_cert_pem");
    expect(bad('[encrypt.kms]\nsecret_name = "s"\n')).toMatchObject({ field: "encrypt.kms.kms_instance_id" });
    expect(
      bad(
        '[encrypt.kms]\nauth_mode = "ecs_ram_role"\nkms_instance_id = "k"\nsecret_name = "s"\nclient_key = "{}"\n',
      ),
    ).toMatchObject({ line: 5, field: "encrypt.kms.client_key" });
    expect(bad('[encrypt.kms]\nauth_mode = "sts"\nkms_instance_id = "k"\n')).toMatchObject({ line: 2 });
  });
});

describe("oidc", () => {
  const KMS =
    '[encrypt.oidc.kms]\ntype = "aliyun"\noidc_provider_arn = "acs:ram::1:oidc-provider/p"\nrole_arn = "acs:ram::1:role/r"\nregion_id = "cn-beijing"\n';
  test("upstream form", () => {
    expect(
      ok(`[encrypt.oidc]\ncommand = "/bin/token"\nargs = ["--aud", "sts"]\nkey_id = "disk-key"\n${KMS}`),
    ).toMatchObject({
      type: "oidc",
      tokenCommand: { command: "/bin/token", args: ["--aud", "sts"], timeoutMs: 30_000 },
      keyId: "disk-key",
      aliyun: {
        oidcProviderArn: "acs:ram::1:oidc-provider/p",
        roleArn: "acs:ram::1:role/r",
        regionId: "cn-beijing",
      },
    });
  });
  test("documented form with [oidc_token_from_exec]", () => {
    expect(
      ok(
        '[encrypt.oidc]\nkms_instance_id = "kst-1"\nclient_key_password_from_kms = "alias/ck"\n[encrypt.oidc.oidc_token_from_exec]\ncommand = "/bin/token"\n',
      ),
    ).toMatchObject({
      type: "oidc",
      tokenCommand: { command: "/bin/token", args: [], timeoutMs: 30_000 },
      kmsInstanceId: "kst-1",
      clientKeyPasswordFromKms: "alias/ck",
    });
  });
  test("rejected: no token command, both token forms, no KMS target, wrong kms type", () => {
    expect(bad(`[encrypt.oidc]\nkey_id = "k"\n${KMS}`).message).toContain("token command is required");
    expect(
      bad(
        `[encrypt.oidc]\ncommand = "a"\nkey_id = "k"\n[encrypt.oidc.oidc_token_from_exec]\ncommand = "b"\n${KMS}`,
      ),
    ).toMatchObject({ line: 2, message: expect.stringContaining("not both") as never });
    expect(bad('[encrypt.oidc]\ncommand = "a"\nkey_id = "k"\n').message).toContain(
      "needs key_id and a [kms] table",
    );
    expect(
      bad(`[encrypt.oidc]\ncommand = "a"\nkey_id = "k"\n${KMS.replace('"aliyun"', '"aws"')}`),
    ).toMatchObject({
      line: 5,
      field: "encrypt.oidc.kms.type",
    });
  });
});

describe("tpm2", () => {
  test("empty table (upstream): PCR 7 in the sha256 bank", () => {
    expect(ok("[encrypt.tpm2]\n")).toMatchObject({ type: "tpm2", pcrs: [7], pcrBank: "sha256" });
    expect(ok('[encrypt.tpm2]\npcrs = [0, 4, 7]\npcr_bank = "sha384"\npin = "1234"\n')).toMatchObject({
      type: "tpm2",
      pcrs: [0, 4, 7],
      pcrBank: "sha384",
      pin: "1234",
    });
  });
  test("rejected: PCR out of range, duplicate, unknown bank", () => {
    expect(bad("[encrypt.tpm2]\npcrs = [7, 24]\n")).toMatchObject({ line: 2, field: "encrypt.tpm2.pcrs.1" });
    expect(bad("[encrypt.tpm2]\npcrs = [7, 7]\n")).toMatchObject({ line: 2, message: "lists a PCR twice" });
    expect(bad('[encrypt.tpm2]\npcr_bank = "md5"\n')).toMatchObject({
      line: 2,
      field: "encrypt.tpm2.pcr_bank",
    });
  });
});
