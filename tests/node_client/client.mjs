// E2: call Watchword from node with the .proto files alone (grpc-js + proto-loader), the way a service
// in another language would. Usage: node client.mjs ADDRESS TOKEN APPLICATION_ID
// Prints one JSON line: the Authenticate answer and two Authorize decisions.
import path from "node:path";
import { fileURLToPath } from "node:url";
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

const [address, token, applicationId] = process.argv.slice(2);
const here = path.dirname(fileURLToPath(import.meta.url));
const protoRoot = path.resolve(here, "..", "..", "proto");
const definition = protoLoader.loadSync("watchword/v1/auth.proto", {
  includeDirs: [protoRoot],
  keepCase: true,
  enums: String,
  defaults: true,
  oneofs: true,
});
const watchword = grpc.loadPackageDefinition(definition).watchword.v1;
const client = new watchword.AuthService(address, grpc.credentials.createInsecure());
const deadline = () => new Date(Date.now() + 10_000);
const call = (method, request) =>
  new Promise((resolve, reject) =>
    client[method](request, { deadline: deadline() }, (error, response) => (error ? reject(error) : resolve(response))),
  );

const credential = { http: { method: "POST", path: "/v1/event_types", headers: [{ name: "authorization", value: `Bearer ${token}` }] } };
try {
  const authenticated = await call("Authenticate", { credential });
  const own = await call("Authorize", { credential, action: "event_type.create", resource: { application_id: applicationId } });
  const listing = await call("Authorize", { credential, action: "application.list", resource: { application_id: applicationId } });
  console.log(JSON.stringify({ authenticated, own: own.decision, listing: listing.decision }));
} finally {
  client.close();
}
