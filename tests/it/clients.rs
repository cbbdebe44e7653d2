//! Drivers as their users run them: pgvector's Python helper over psycopg, reading
//! vectors into numpy and sending numpy arrays as parameters (text and binary).

use crate::common::start_server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_with_pgvector_register_vector_and_numpy() {
    if !crate::common::runs("python3", &["-c", "import psycopg, pgvector, numpy"]) {
        crate::common::missing_dependency(
            "psycopg_with_pgvector_register_vector_and_numpy",
            "the Python packages psycopg, pgvector and numpy",
            "pip install 'psycopg[binary]' pgvector numpy; .ci/run installs them",
        );
        return;
    }
    let server = start_server().await;
    let script = format!(
        r#"
import numpy as np, psycopg
from pgvector.psycopg import register_vector
conn = psycopg.connect("host=127.0.0.1 port={port} user=rankql dbname=rankql", autocommit=True)
register_vector(conn)
vector = conn.execute("SELECT embed('trail running shoes')").fetchone()[0].to_numpy()
assert vector.dtype == np.float32 and vector.shape == (384,), vector.shape
with conn.cursor(binary=True) as cur:
    binary = cur.execute("SELECT embed('trail running shoes')").fetchone()[0].to_numpy()
assert np.allclose(vector, binary)
a = np.array([1, 2, 3], dtype=np.float32)
b = np.array([1, 2, 3.5], dtype=np.float32)
for query in ("SELECT cosine(%t, %t)", "SELECT cosine(%b, %b)", "SELECT cosine(%s::vector, %s::vector)"):
    (score,) = conn.execute(query, (a, b)).fetchone()
    assert abs(score - float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))) < 1e-6, (query, score)
top = conn.execute(
    "SELECT title FROM products ORDER BY cosine(embed(title), %s) DESC LIMIT 1", (vector,)
).fetchone()[0]
print(top)
"#,
        port = server.port
    );
    let stdout = crate::common::run_python(script).await;
    assert!(stdout.contains("running"), "{stdout}");
}
