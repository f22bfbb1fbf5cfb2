// dynalite-guard.js: preloaded into dynalite (node --require) by
// scripts/servers.sh and in MEMO_DYNALITE_CMD.
//
// dynalite 4.0.0 rethrows every error of an incoming request
// (index.js: req.on('error', function (err) { throw err })). On Node 20 a
// client that closes its connection before its request's body has arrived
// raises such an error ("aborted", ECONNRESET), so one abandoned request
// kills the whole server. DynamoDB does not die when a client gives up, and
// memo's tests give up on purpose (a Timeout shorter than the store, a proxy
// that cuts connections). This guard drops exactly that error, with a line
// in the log; any other uncaught exception is printed and ends the process
// as before.
'use strict'

process.on('uncaughtException', function (err) {
  if (err && err.code === 'ECONNRESET' && err.message === 'aborted') {
    console.error('dynalite-guard: a client aborted its request; ignored')
    return
  }
  console.error(err)
  process.exit(7)
})
