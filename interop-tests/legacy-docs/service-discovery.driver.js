// Appended to service-discovery.js by drive.js (the block itself unchanged):
// runs the block's `userService` methods on commands from the test, one JSON
// line each on stdin, {"op": "createUser", "args": [...]}, and prints
// `driver <op> -> <JSON result>` or `driver <op> !! <error message>`.
require('node:readline')
  .createInterface({ input: process.stdin })
  .on('line', async (line) => {
    const { op, args } = JSON.parse(line);
    try {
      const result = await userService[op](...args);
      console.log(`driver ${op} -> ${JSON.stringify(result)}`);
    } catch (err) {
      console.log(`driver ${op} !! ${err.message}`);
    }
  });
