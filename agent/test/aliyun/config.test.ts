/** The kms/oidc config fields H7 added: parsed, normalised, and dumped back (config dump). */
import { describe, expect, test } from "bun:test";
import { stringify } from "smol-toml";
import * as v from "valibot";
import { EncryptSchema, type ProviderConfig, parseToml, providerToToml } from "../../src/config/index.ts";

function parse(text: string): { config?: ProviderConfig; messages: string[] } {
  const source = parseToml("volume.toml", text);
  const r = v.safeParse(EncryptSchema, source.data.encrypt, { abortEarly: false });
  return r.success ? { config: r.output, messages: [] } : { messages: r.issues.map((i) => i.message) };
}

function roundTrip(text: string): ProviderConfig {
  const { config, messages } = parse(text);
  expect(messages).toEqual([]);
  expect(parse(stringify({ encrypt: providerToToml(config!) })).config).toEqual(config!);
  return config!;
}

describe("kms config additions", () => {
  test("endpoint, imds_endpoint, client_key_password_file", () => {
    expect(
      roundTrip(
        '[encrypt.kms]\nkms_instance_id = "kst-1"\nsecret_name = "s"\nclient_key = "ck.json"\nclient_key_password_file = "pw.txt"\nkms_cert_pem = "ca.pem"\nendpoint = "https://10.0.2.2:8443/"\n',
      ),
    ).toMatchObject({
      clientKey: "ck.json",
      clientKeyPasswordFile: "pw.txt",
      endpoint: "https://10.0.2.2:8443/",
    });
    expect(
      roundTrip(
        '[encrypt.kms]\nauth_mode = "ecs_ram_role"\nkms_instance_id = "k"\nsecret_name = "s"\nimds_endpoint = "http://127.0.0.1:9"\n',
      ),
    ).toMatchObject({ authMode: "ecs_ram_role", imdsEndpoint: "http://127.0.0.1:9" });
  });

  test("client_key_id alone is accepted: the provider looks for the console-named files", () => {
    expect(
      roundTrip('[encrypt.kms]\nkms_instance_id = "kst-1"\nsecret_name = "s"\nclient_key_id = "KAAP.1"\n'),
    ).toMatchObject({
      clientKeyId: "KAAP.1",
    });
  });

  test("without client_key_id, the password may come from a file but the rest is required", () => {
    const { messages } = parse(
      '[encrypt.kms]\nkms_instance_id = "k"\nclient_key = "{}"\nclient_key_password_file = "pw"\n',
    );
    expect(messages.join("\n")).toContain("client-key authentication needs kms_cert_pem, secret_name");
  });

  test("endpoints must be URLs; client key files are not for RAM role mode", () => {
    expect(
      parse(
        '[encrypt.kms]\nkms_instance_id = "k"\nsecret_name = "s"\nclient_key_id = "K"\nendpoint = "kms.local"\n',
      ).messages.join(),
    ).toContain("must be an http:// or https:// URL");
    expect(
      parse(
        '[encrypt.kms]\nauth_mode = "ecs_ram_role"\nkms_instance_id = "k"\nsecret_name = "s"\nclient_key_password_file = "pw"\n',
      ).messages.join(),
    ).toContain('not used with auth_mode = "ecs_ram_role"');
  });
});

describe("oidc config additions", () => {
  test("[kms] sts_endpoint and endpoint", () => {
    expect(
      roundTrip(
        '[encrypt.oidc]\ncommand = "t"\nkey_id = "k"\n[encrypt.oidc.kms]\ntype = "aliyun"\noidc_provider_arn = "p"\nrole_arn = "r"\nregion_id = "cn-beijing"\nsts_endpoint = "http://127.0.0.1:1/"\nendpoint = "http://127.0.0.1:2/"\n',
      ),
    ).toMatchObject({ aliyun: { stsEndpoint: "http://127.0.0.1:1/", endpoint: "http://127.0.0.1:2/" } });
  });
});
