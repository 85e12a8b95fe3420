/**
 * A cloud's instance user data, as one small module per cloud (aliyun.ts is the first): where
 * the FDE configuration bundle of one instance comes from when the image serves many.
 */

/** The user data's text, or a one-sentence reason there is none (no service, none set). */
export type UserDataResult = { text: string } | { absent: string };

export interface UserDataSource {
  /** Names the source on the console and in bundle errors, e.g. "Alibaba Cloud ECS user data". */
  readonly name: string;
  /**
   * The user data, within the source's own time bound. Throws (an FdeError) when a service
   * answered but not as it should: the caller then uses the initrd's configuration.
   */
  read(): Promise<UserDataResult>;
}
