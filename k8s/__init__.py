"""The Kubernetes shell every ironlb process shares (as MetalLB's internal/k8s): synchronous, threaded,
JSON dicts in and out. Components (controller, speaker, dataplane) and lab/ reach the API only through it; it
imports no component and nothing of lab/.

A daemon's start-up, in order:
- `client = k8s.client.Client.load(args.kubeconfig)`: --kubeconfig, KUBECONFIG, in-cluster, ~/.kube/config.
  get / get_or_none / create / replace / merge_patch / json_patch / apply / delete; `list` (paged items) and
  `watch`. Errors: ApiError (status, reason, message), WatchExpired (410), TRANSPORT_ERRORS (no answer).
- `k8s.informer.Informer(client, path, Handlers(on_add=..., on_update=..., on_delete=...),
  transform=keep_what_i_read).start()`, then `wait_for_sync()`; read the cache with get / list.
- `k8s.workqueue.WorkQueue[str]()`: handlers `add(key)`; worker threads `run_worker(queue, sync)`.
- `k8s.leader.LeaderElector(client, namespace, name, identity).run(stop, started, stopped)`; check
  `may_write()` before every write a leader alone may make.
- `k8s.events.EventRecorder(client, component).event(obj, "Warning", reason, message)`.
- `k8s.serving.HealthServer(address, port).start()` with `add_check(name, fn)`: /metrics, /livez, /readyz.
"""
