FROM python:3.11.11-slim
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN useradd --system --uid 10001 cheaplm
USER cheaplm
ENV PORT=8000
EXPOSE 8000
CMD ["python", "app.py"]
