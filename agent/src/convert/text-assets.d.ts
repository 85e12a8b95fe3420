// Files imported `with { type: "text" }` (embedded into the executable by Bun) are strings.
declare module "*.sh" {
  const text: string;
  export default text;
}
declare module "*.service" {
  const text: string;
  export default text;
}
declare module "*.rules" {
  const text: string;
  export default text;
}
declare module "*.conf" {
  const text: string;
  export default text;
}
