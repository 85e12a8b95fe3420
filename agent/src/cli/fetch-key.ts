import { notYetAvailable } from "./not-yet.ts";

export default notYetAvailable(["fetch-key"], "Fetch one volume's key through its provider");
