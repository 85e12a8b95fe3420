/**
 * The protobuf messages of the KMS instance API (proto3 package `dkms_api`) that GetSecretValue
 * uses, declared as a hand-written descriptor so no generated code or .proto parser is shipped.
 * Field names and numbers follow the service's dkms_api.proto.
 */
import { create, createFileRegistry, type DescMessage, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  FileDescriptorProtoSchema,
  FieldDescriptorProto_Label as Label,
  FieldDescriptorProto_Type as Type,
} from "@bufbuild/protobuf/wkt";

export interface GetSecretValueRequest {
  SecretName: string;
  VersionStage: string;
  VersionId: string;
  FetchExtendedConfig: boolean;
}

export interface GetSecretValueResponse {
  SecretName: string;
  SecretType: string;
  SecretData: string;
  SecretDataType: string;
  VersionStages: string[];
  VersionId: string;
  CreateTime: string;
  RequestId: string;
  LastRotationDate: string;
  NextRotationDate: string;
  ExtendedConfig: string;
  AutomaticRotation: string;
  RotationInterval: string;
}

/** Body of every non-2xx answer of the instance API. */
export interface ErrorMessage {
  StatusCode: number;
  ErrorCode: string;
  ErrorMessage: string;
  RequestId: string;
}

const field = (name: string, number: number, type: Type, repeated = false) => ({
  name,
  number,
  type,
  label: repeated ? Label.REPEATED : Label.OPTIONAL,
  jsonName: name,
});
const str = (name: string, number: number) => field(name, number, Type.STRING);

const registry = createFileRegistry(
  create(FileDescriptorProtoSchema, {
    name: "dkms_api.proto",
    package: "dkms_api",
    syntax: "proto3",
    messageType: [
      {
        name: "GetSecretValueRequest",
        field: [
          str("SecretName", 1),
          str("VersionStage", 2),
          str("VersionId", 3),
          field("FetchExtendedConfig", 4, Type.BOOL),
        ],
      },
      {
        name: "GetSecretValueResponse",
        field: [
          str("SecretName", 1),
          str("SecretType", 2),
          str("SecretData", 3),
          str("SecretDataType", 4),
          field("VersionStages", 5, Type.STRING, true),
          str("VersionId", 6),
          str("CreateTime", 7),
          str("RequestId", 8),
          str("LastRotationDate", 9),
          str("NextRotationDate", 10),
          str("ExtendedConfig", 11),
          str("AutomaticRotation", 12),
          str("RotationInterval", 13),
        ],
      },
      {
        name: "Error",
        field: [
          field("StatusCode", 1, Type.INT32),
          str("ErrorCode", 2),
          str("ErrorMessage", 3),
          str("RequestId", 4),
        ],
      },
    ],
  }),
  () => undefined,
);

function schema(name: string): DescMessage {
  const desc = registry.getMessage(`dkms_api.${name}`);
  if (!desc) throw new Error(`dkms_api.${name} missing from descriptor`);
  return desc;
}

/** A codec for one message type; decoding skips unknown fields, as proto3 requires. */
function codec<T extends object>(name: string) {
  const desc = schema(name);
  return {
    encode(value: Partial<T>): Uint8Array {
      return toBinary(desc, create(desc, value as never));
    },
    decode(bytes: Uint8Array): T {
      const { $typeName: _, ...fields } = fromBinary(desc, bytes) as Record<string, unknown>;
      return fields as T;
    },
  };
}

export const GetSecretValueRequest = codec<GetSecretValueRequest>("GetSecretValueRequest");
export const GetSecretValueResponse = codec<GetSecretValueResponse>("GetSecretValueResponse");
export const ErrorMessage = codec<ErrorMessage>("Error");
