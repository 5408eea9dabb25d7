/**
 * pg.Client that never leaves a failed connection's socket open. When a connection fails
 * inside authentication on the client's side (the server asks for a SCRAM password and the
 * URL has none: "SASL: SCRAM-SERVER-FIRST-MESSAGE: client password must be a string"), pg
 * rejects connect() but keeps the socket, and the process never exits. Every connection
 * Tally opens (connectClient, and pools through their Client option) uses this class.
 */
import pg from 'pg';

function destroySocket(client: pg.Client): void {
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}

export class ClosingClient extends pg.Client {
  override connect(): Promise<pg.Client>;
  override connect(callback: ((err: Error) => void) | ((err: null, c: pg.Client) => void)): void;
  override connect(callback?: ((err: Error) => void) | ((err: null, c: pg.Client) => void)): Promise<pg.Client> | void {
    if (callback) {
      const done = callback as (err: Error | null, c?: pg.Client) => void;
      super.connect((err: Error | null, c?: pg.Client) => {
        if (err) destroySocket(this);
        done(err, c);
      });
      return;
    }
    return super.connect().catch((err: unknown) => {
      destroySocket(this);
      throw err;
    });
  }
}

/** A client-side authentication failure of pg (no password for a server that wants one). */
export function isClientAuthFailure(err: unknown): boolean {
  return err instanceof Error && /^SASL: |password must be a string|no password/i.test(err.message);
}
