// Compose subgraph SDL files into a supergraph with @theguild/federation-composition.
// Usage: node compose.mjs name=path.graphql[=url] …  (url: where a gateway reaches it)
// Prints {"errors": [...]} or {"supergraphSdl": "..."} as JSON on stdout.
import { readFileSync } from "node:fs";
import { parse } from "graphql";
import { composeServices, compositionHasErrors } from "@theguild/federation-composition";

const services = process.argv.slice(2).map((arg) => {
  const [name, file, url = `http://${name}.invalid/graphql`] = arg.split("=");
  return { name, url, typeDefs: parse(readFileSync(file, "utf8")) };
});
const result = composeServices(services);
if (compositionHasErrors(result)) {
  console.log(JSON.stringify({ errors: result.errors.map((e) => e.message) }));
} else {
  console.log(JSON.stringify({ supergraphSdl: result.supergraphSdl }));
}
