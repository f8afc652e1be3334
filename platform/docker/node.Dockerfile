# A reference GPU node: the real cog HTTP server running the CPU reference predictor.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY requirements.lock .
RUN pip install --no-cache-dir -r requirements.lock
COPY platform/nodes/reference /node
WORKDIR /node
ENV COG_PREDICT_TYPE_STUB=predict.py:Predictor
EXPOSE 5000
CMD ["python", "-m", "cog.server.http", "--host", "0.0.0.0", "--port", "5000"]
