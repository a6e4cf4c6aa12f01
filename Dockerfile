# The Kapsa operator image: `docker build -t <registry>/kapsa:<version> .`
FROM python:3.11-slim

# git: Kapsa lists branches and reads commits with the git command line.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . /src
RUN pip install --no-cache-dir . \
    && rm -rf /src

# A numeric non-root user, so `runAsNonRoot: true` can verify it without a passwd lookup.
RUN groupadd --gid 10001 kapsa \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
        --shell /usr/sbin/nologin kapsa \
    && mkdir -p /var/lib/kapsa /var/cache/kapsa \
    && chown 10001:10001 /var/lib/kapsa /var/cache/kapsa
USER 10001:10001
WORKDIR /tmp

EXPOSE 8080
ENTRYPOINT ["kapsa"]
CMD ["operator"]
