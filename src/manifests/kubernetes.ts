/**
 * funcd → Kubernetes ("eject"): the objects that run a function the same way on a cluster — a Deployment
 * with the pod security of Kyma's buildless design, a Service, scaling (an HPA, or a KEDA ScaledObject for
 * scale to zero), the Secret the function reads (values only when asked) — and the Kyma `Function` form.
 * Pure: the API hands in the function's spec, its revision's image and (for Kyma) its files.
 */
import type { FunctionSpec } from "../deploy/spec.js";
import { KYMA_API_VERSION } from "./kyma.js";

export type K8sObject = Record<string, unknown> & { apiVersion: string; kind: string };

export interface ExportInput {
  name: string;
  spec: FunctionSpec;
  /** The serving revision's image (`funcd/<name>:<hash>` or a registry reference); null without one. */
  image: string | null;
}

export interface ExportOptions {
  /** A KEDA ScaledObject (scale to zero on HTTP traffic) instead of an HPA. */
  keda?: boolean;
  /** Secret values by funcd secret name: written into the Secret only when given. */
  secretValues?: Record<string, string>;
}

/** The Kubernetes Secret holding a function's funcd secrets, one key per secret. */
export const secretObjectName = (fn: string) => `${fn}-secrets`;

const LABEL = "app.kubernetes.io/name";

export function toKubernetes(
  input: ExportInput,
  options: ExportOptions = {},
): { objects: K8sObject[]; notes: string[] } {
  const { name, spec } = input;
  const notes: string[] = [];
  const labels = { [LABEL]: name, "app.kubernetes.io/managed-by": "funcd-export" };
  const secrets = spec.secrets ?? [];
  const secretName = secretObjectName(name);
  const image = input.image ?? `REPLACE-ME/${name}:latest`;
  if (!input.image) {
    notes.push(
      `${name} has no image (it runs buildless or on the process driver): build and push one (funcd build, a registry) and set it in the Deployment`,
    );
  } else if (!input.image.includes("/") || input.image.startsWith("funcd/")) {
    notes.push(
      `${name}'s image ${input.image} is local to this machine: push it to a registry the cluster can pull from`,
    );
  }
  const env = [
    ...Object.entries(spec.env).map(([k, v]) => ({ name: k, value: v })),
    ...Object.entries(spec.secretEnv ?? {}).map(([k, secret]) => ({
      name: k,
      valueFrom: { secretKeyRef: { name: secretName, key: secret } },
    })),
    { name: "FUNCD_FUNCTION_NAME", value: name },
    { name: "FUNCD_HANDLER", value: spec.handler },
    { name: "FUNCD_LISTEN", value: "8080" },
    { name: "FUNCD_TIMEOUT_MS", value: String(spec.timeout) },
    { name: "FUNCD_MEMORY_LIMIT_MB", value: String(spec.memory) },
    ...(secrets.length > 0 ? [{ name: "FUNCD_SECRETS_DIR", value: "/var/secrets" }] : []),
  ];
  const probe = (period: number) => ({
    httpGet: { path: "/healthz", port: 8080 },
    periodSeconds: period,
    timeoutSeconds: 2,
  });
  const limits: Record<string, string> = { memory: `${spec.memory}Mi` };
  if (spec.cpu !== undefined) limits.cpu = `${Math.round(spec.cpu * 1000)}m`;
  const deployment: K8sObject = {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name, labels, annotations: spec.annotations },
    spec: {
      replicas: Math.max(spec.scale.min, 1),
      selector: { matchLabels: { [LABEL]: name } },
      template: {
        metadata: { labels: { ...spec.labels, ...labels } },
        spec: {
          automountServiceAccountToken: false,
          securityContext: {
            runAsNonRoot: true,
            runAsUser: 10001,
            runAsGroup: 10001,
            seccompProfile: { type: "RuntimeDefault" },
          },
          containers: [
            {
              name: "function",
              image,
              ports: [{ name: "http", containerPort: 8080 }],
              env,
              resources: { limits, requests: { ...limits } },
              securityContext: {
                runAsNonRoot: true,
                readOnlyRootFilesystem: true,
                allowPrivilegeEscalation: false,
                capabilities: { drop: ["ALL"] },
                seccompProfile: { type: "RuntimeDefault" },
              },
              livenessProbe: probe(10),
              readinessProbe: probe(5),
              volumeMounts: [
                { name: "tmp", mountPath: "/tmp" },
                ...(secrets.length > 0
                  ? [{ name: "secrets", mountPath: "/var/secrets", readOnly: true }]
                  : []),
              ],
            },
          ],
          volumes: [
            { name: "tmp", emptyDir: { medium: "Memory", sizeLimit: "64Mi" } },
            ...(secrets.length > 0 ? [{ name: "secrets", secret: { secretName, defaultMode: 0o400 } }] : []),
          ],
        },
      },
    },
  };
  const service: K8sObject = {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name, labels },
    spec: { selector: { [LABEL]: name }, ports: [{ name: "http", port: 80, targetPort: "http" }] },
  };
  const objects: K8sObject[] = [deployment, service];
  if (options.keda) {
    objects.push({
      apiVersion: "keda.sh/v1alpha1",
      kind: "ScaledObject",
      metadata: { name, labels },
      spec: {
        scaleTargetRef: { name },
        minReplicaCount: spec.scale.min,
        maxReplicaCount: spec.scale.max,
        cooldownPeriod: Math.round(spec.scale.idleTimeout / 1000),
        triggers: [
          {
            type: "prometheus",
            metadata: {
              serverAddress: "http://prometheus.monitoring:9090",
              query: `sum(rate(http_requests_total{service="${name}"}[1m]))`,
              threshold: "10",
            },
          },
        ],
      },
    });
    notes.push(
      `${name}: the KEDA trigger reads request rates from Prometheus; set serverAddress and query for your cluster`,
    );
  } else {
    objects.push({
      apiVersion: "autoscaling/v2",
      kind: "HorizontalPodAutoscaler",
      metadata: { name, labels },
      spec: {
        scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name },
        minReplicas: Math.max(spec.scale.min, 1),
        maxReplicas: spec.scale.max,
        metrics: [
          {
            type: "Resource",
            resource: { name: "cpu", target: { type: "Utilization", averageUtilization: 70 } },
          },
        ],
      },
    });
    if (spec.scale.min === 0) notes.push(`${name}: an HPA cannot scale to zero (min 1); use --keda for that`);
  }
  if (secrets.length > 0) {
    const values = options.secretValues;
    if (values) {
      objects.push({
        apiVersion: "v1",
        kind: "Secret",
        metadata: { name: secretName, labels },
        type: "Opaque",
        stringData: Object.fromEntries(secrets.map((s) => [s, values[s] ?? ""])),
      });
    } else {
      notes.push(
        `${name} reads the Secret ${secretName} (keys ${secrets.join(", ")}); create it: kubectl create secret generic ${secretName} ${secrets.map((s) => `--from-literal=${s}=…`).join(" ")} (or export with --include-secret-values)`,
      );
    }
  }
  return { objects, notes };
}

/** The Kyma `Function` form: inline source when the code is one handler (+ dependencies), else its git source. */
export function toKyma(input: { name: string; spec: FunctionSpec; files: Record<string, string> }): {
  object?: K8sObject;
  problem?: string;
} {
  const { name, spec, files } = input;
  const python = spec.runtime.startsWith("python");
  const handlerFile = python ? "handler.py" : "handler.js";
  const depsFile = python ? "requirements.txt" : "package.json";
  const runtime = python ? "python312" : spec.runtime;
  let source: Record<string, unknown>;
  const extra = Object.keys(files).filter((f) => f !== handlerFile && f !== depsFile);
  if (spec.source?.git) {
    const git = spec.source.git;
    source = {
      gitRepository: {
        url: git.url,
        ...(git.ref ? { reference: git.ref } : {}),
        ...(git.dir ? { baseDir: `/${git.dir}` } : {}),
        ...(git.secret ? { auth: { type: "basic", secretName: git.secret } } : {}),
      },
    };
  } else if (spec.handler === "handler.main" && files[handlerFile] !== undefined && extra.length === 0) {
    source = {
      inline: {
        source: files[handlerFile],
        ...(files[depsFile] !== undefined ? { dependencies: files[depsFile] } : {}),
      },
    };
  } else {
    return {
      problem: `${name} cannot be a Kyma inline Function: Kyma runs one ${handlerFile} exporting main (it has ${Object.keys(files).join(", ")} and handler ${spec.handler}); push it to git and give it source.git`,
    };
  }
  const env: unknown[] = Object.entries(spec.env).map(([k, v]) => ({ name: k, value: v }));
  for (const [k, secret] of Object.entries(spec.secretEnv ?? {})) {
    const dot = secret.indexOf(".");
    env.push({
      name: k,
      valueFrom: {
        secretKeyRef:
          dot > 0
            ? { name: secret.slice(0, dot), key: secret.slice(dot + 1) }
            : { name: secret, key: secret },
      },
    });
  }
  const { "funcd.dev/applied-from": _from, "funcd.dev/format": _format, ...annotations } = spec.annotations;
  return {
    object: {
      apiVersion: KYMA_API_VERSION,
      kind: "Function",
      metadata: { name },
      spec: {
        runtime,
        source,
        ...(env.length > 0 ? { env } : {}),
        resourceConfiguration: {
          function: spec.profile
            ? { profile: spec.profile }
            : {
                resources: {
                  limits: {
                    memory: `${spec.memory}Mi`,
                    ...(spec.cpu !== undefined ? { cpu: `${Math.round(spec.cpu * 1000)}m` } : {}),
                  },
                },
              },
        },
        scaleConfig: { minReplicas: spec.scale.min, maxReplicas: spec.scale.max },
        ...(Object.keys(spec.labels).length > 0 ? { labels: spec.labels } : {}),
        ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
      },
    },
  };
}
